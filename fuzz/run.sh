#!/bin/sh
# Runs every fuzz target for SECONDS each (default 60) and prints the
# executions and any crash. Needs cargo-fuzz (cargo install cargo-fuzz) and a
# nightly toolchain, or stable with RUSTC_BOOTSTRAP=1 (set when no nightly).
set -eu
cd "$(dirname "$0")"
seconds="${1:-60}"
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    toolchain="+nightly"
else
    toolchain=""
    export RUSTC_BOOTSTRAP=1
fi
status=0
for target in $(cargo $toolchain fuzz list); do
    mkdir -p "corpus/$target"
    seeds=""; [ -d "seeds/$target" ] && seeds="seeds/$target"
    log="$(mktemp)"
    if cargo $toolchain fuzz run "$target" "corpus/$target" $seeds -- -max_total_time="$seconds" -max_len=512 -print_final_stats=1 >"$log" 2>&1; then
        result=ok
    else
        result=CRASH
        status=1
    fi
    execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')"
    echo "$target: $result, $execs executions in ${seconds}s"
    [ "$result" = ok ] || tail -40 "$log"
    rm -f "$log"
done
exit "$status"
