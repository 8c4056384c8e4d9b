#!/bin/sh
# Builds the fuzz targets and runs each for SECONDS (default 60), printing
# the executions and any crash. libFuzzer with coverage instrumentation on
# stable Rust, without a sanitizer: the parsers are safe Rust, so what a run
# hunts for is a panic, an arithmetic overflow or a broken invariant (the
# targets assert them). No cargo-fuzz or nightly needed; `cargo fuzz run
# <target>` works too for those who have them.
#
#   fuzz/run.sh [--quick] [SECONDS]
#
# --quick builds without optimisation (the test command's short runs: the
# build is what costs there); without it the build is optimised, for the
# long runs reported in the issue (>= 10 million executions per target).
set -eu
cd "$(dirname "$0")"
profile=release
if [ "${1:-}" = --quick ]; then
    profile=dev
    shift
fi
seconds="${1:-60}"
host="$(rustc -vV | sed -n 's/^host: //p')"
# What cargo-fuzz passes for `--sanitizer none`. --target keeps these flags
# off build scripts and proc macros.
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
-Cllvm-args=-sanitizer-coverage-stack-depth \
-Cllvm-args=-simplifycfg-branch-fold-threshold=0 \
--cfg fuzzing -Cdebug-assertions -Coverflow-checks"
export RUSTFLAGS
targets="megatec gpser nut mdns"
started=$(date +%s)
cargo build --quiet --locked --profile "$profile" --target "$host" --bins
target_dir="${CARGO_TARGET_DIR:-target}"
[ "$profile" = dev ] && out=debug || out="$profile"
echo "fuzz: built ($profile) in $(( $(date +%s) - started ))s"
status=0
for target in $targets; do
    mkdir -p "corpus/$target" "artifacts/$target"
    seeds=""; [ -d "seeds/$target" ] && seeds="seeds/$target"
    log="$(mktemp)"
    # shellcheck disable=SC2086 # $seeds is one directory or nothing
    if "$target_dir/$host/$out/$target" "corpus/$target" $seeds \
        -max_total_time="$seconds" -max_len=512 -print_final_stats=1 \
        -artifact_prefix="artifacts/$target/" >"$log" 2>&1; then
        result=ok
    else
        result=CRASH
        status=1
    fi
    execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')"
    echo "fuzz $target: $result, $execs executions in ${seconds}s"
    [ "$result" = ok ] || tail -40 "$log"
    rm -f "$log"
done
exit "$status"
