#!/bin/sh
# Runs every fuzz target for SECONDS each (default 60), one after another.
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly toolchain, or
# a stable one with RUSTC_BOOTSTRAP=1 (set below when no nightly is found).
set -eu
cd "$(dirname "$0")"
seconds="${1:-60}"
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    toolchain="+nightly"
else
    toolchain=""
    export RUSTC_BOOTSTRAP=1
fi
for target in $(cargo $toolchain fuzz list); do
    echo "== $target ($seconds s)"
    mkdir -p "corpus/$target"
    seeds=""; [ -d "seeds/$target" ] && seeds="seeds/$target"
    cargo $toolchain fuzz run "$target" "corpus/$target" $seeds -- -max_total_time="$seconds" -print_final_stats=1
done
