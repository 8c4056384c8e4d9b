#!/bin/sh
# Runs every fuzz target for SECONDS each (default 60) and prints the
# executions and any crash. Needs cargo-fuzz (cargo install cargo-fuzz); the
# nightly features come from RUSTC_BOOTSTRAP, so stable Rust is enough.
set -eu
cd "$(dirname "$0")"
seconds="${1:-60}"
export RUSTC_BOOTSTRAP=1
status=0
for target in $(cargo fuzz list); do
    mkdir -p "corpus/$target"
    log="$(mktemp)"
    if cargo fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
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
