#!/usr/bin/env bash
# Every test nodewarden has, on a fresh Debian 12 machine. Installs what the
# tests need first (tests/setup/install-test-tools.sh: NUT's upsd and
# drivers, avahi-daemon, iproute2, the Prometheus client parser, Prometheus
# and promtool; then the
# packaging tools) and needs root for that and for the tmpfs disk-full test.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "test: run as root (apt installs, pseudo-terminals for NUT, a tmpfs mount): sudo $0" >&2
    exit 1
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "test: needs Rust 1.95 or newer (rustup: https://rustup.rs)" >&2
    exit 1
fi
# Every program a test runs is installed here, once, before any test starts:
# a test never installs (two at once fail on apt's lock); one that finds its
# tool missing fails naming tests/setup/install-test-tools.sh.
echo "== setup"
sh tests/setup/install-test-tools.sh
# The package test's toolchain (cross linkers, zig, debootstrap), likewise.
if [ -x packaging/test-debs.sh ]; then
    packaging/install-build-deps.sh amd64,arm64,armhf zig
    command -v debootstrap >/dev/null ||
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi
# And proof of it: during `cargo test`, apt-get, apt and dpkg are stubs that
# log the call and fail, so a test that tries to install fails this command.
no_apt="$(mktemp -d)"
trap 'rm -rf "$no_apt"' EXIT
for tool in apt-get apt dpkg; do
    printf '#!/bin/sh\necho "%s $*" >>"%s/calls"\necho "a test ran %s: tests must not install; add the package to tests/setup/install-test-tools.sh" >&2\nexit 100\n' \
        "$tool" "$no_apt" "$tool" >"$no_apt/$tool"
    chmod 755 "$no_apt/$tool"
done
# no_apt_check SUITE: fails the command if a test of SUITE called one of them.
no_apt_check() {
    if [ -s "$no_apt/calls" ]; then
        echo "test: a test ran apt/dpkg during $1 (tests must not install; see tests/setup/install-test-tools.sh):" >&2
        sed 's/^/    /' "$no_apt/calls" >&2
        exit 1
    fi
}

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== build"
cargo build --workspace --bins --quiet

# side_by_side NAME FIRST SECOND: runs the shell functions FIRST and SECOND
# at once, FIRST's summary lines as they come and SECOND's after it, both
# whole in /tmp/nodewarden-NAME.log; exits 1 naming the failures if either
# failed. For test binaries that mostly wait on timers, processes and
# sockets, with the CPU idle; each test has its own ports, directories and
# namespaces, as it must to run beside the others in its own binary.
side_by_side() {
    local log="/tmp/nodewarden-$1" first second pid
    # errexit off around the pipeline, and no `|| true` after it: with
    # pipefail, `|| true` would run on any failure and PIPESTATUS would then
    # be true's 0, so a failing test would pass the command.
    set +e
    "$3" >"$log-second.log" 2>&1 &
    pid=$!
    "$2" 2>&1 | tee "$log-first.log" | grep -E "$summary"
    first=${PIPESTATUS[0]}
    wait "$pid"
    second=$?
    echo "-- and beside it:"
    grep -E "$summary" "$log-second.log"
    set -e
    cat "$log-first.log" "$log-second.log" >"$log.log"
    rm -f "$log-first.log" "$log-second.log"
    if [ "$first" != 0 ] || [ "$second" != 0 ]; then
        grep -E -A30 '^failures:' "$log.log" | head -200
        exit 1
    fi
}
summary='^(test result|     Running|.*FAILED|.*panicked)'

echo "== tests"
# Built once, then the end-to-end suites (tests/tests/*_e2e.rs: real
# collectors, agents and UPSes) run beside everything else: a third off this
# phase on two cores. Both streams select with --workspace, so features unify
# as in one `cargo test` and nothing is built twice; the file glob puts a new
# test file in one stream or the other without a list to keep.
PATH="$no_apt:$PATH" cargo test --workspace --no-run --quiet
e2e=() rest=()
for file in */tests/*.rs; do
    case "$file" in
    tests/tests/*_e2e.rs) e2e+=(--test "$(basename "$file" .rs)") ;;
    *) rest+=(--test "$(basename "$file" .rs)") ;;
    esac
done
units_and_integration() {
    local units docs
    PATH="$no_apt:$PATH" cargo test --workspace --no-fail-fast --lib --bins "${rest[@]}"
    units=$?
    PATH="$no_apt:$PATH" cargo test --workspace --no-fail-fast --doc
    docs=$?
    [ "$units" = 0 ] && [ "$docs" = 0 ]
}
end_to_end() { PATH="$no_apt:$PATH" cargo test --workspace --no-fail-fast "${e2e[@]}"; }
side_by_side test units_and_integration end_to_end
no_apt_check "cargo test"

# The disk-writes bench beside Prometheus, short (40 s, a sync in it): it
# runs, both sides write, the table prints. Full figures: docs/storage.md.
echo "== disk writes against Prometheus (short)"
PATH="$no_apt:$PATH" cargo test -p nodewarden-tests --bench disk_writes --quiet 2>&1 | grep -E '^\|'
no_apt_check "the disk_writes bench"

rm -f /tmp/nodewarden-test-packaged.log
if [ -x packaging/test-debs.sh ]; then
    echo "== packages"
    packaging/test-debs.sh --quick
    # The amd64 package's agent is a static musl build, not the debug glibc
    # binary the tests above ran: the end-to-end suites that exercise the
    # agent's side again, with it: the sequence, commands, the UPS, real
    # riello_ser delays, the link and trust. (The drain, outage, UPS-retry
    # and fault matrices are the collector's decisions; they ran above.)
    packaged_agent=target/x86_64-unknown-linux-musl/release/nodewarden-agent
    if [ "$(uname -m)" = x86_64 ] && [ -x "$packaged_agent" ]; then
        echo "== end to end with the packaged agent ($packaged_agent)"
        packaged_sequence() {
            PATH="$no_apt:$PATH" NODEWARDEN_TEST_AGENT="$PWD/$packaged_agent" \
                cargo test -p nodewarden-tests --no-fail-fast --test power_e2e
        }
        packaged_link_and_ups() {
            PATH="$no_apt:$PATH" NODEWARDEN_TEST_AGENT="$PWD/$packaged_agent" \
                cargo test -p nodewarden-tests --no-fail-fast \
                --test power_ups_delay_e2e --test commands --test ups_e2e --test link --test trust
        }
        side_by_side test-packaged packaged_sequence packaged_link_and_ups
        no_apt_check "the packaged agent's end-to-end run"
    fi
fi

# A short bounded run of every parser fuzz target (unoptimised build: the
# build is what costs here). Long runs: fuzz/run.sh SECONDS.
fuzz_seconds="${NODEWARDEN_FUZZ_SECONDS:-12}"
echo "== fuzz (${fuzz_seconds}s per target)"
fuzz/run.sh --quick "$fuzz_seconds"
passed=$(grep -Eo 'test result: ok\. [0-9]+ passed' /tmp/nodewarden-test.log | awk '{s+=$4} END {print s+0}')
again=$(grep -Eos 'test result: ok\. [0-9]+ passed' /tmp/nodewarden-test-packaged.log | awk '{s+=$4} END {print s+0}')
echo "$passed passed, 0 failed (and $again of them again with the packaged agent)"
