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

echo "== tests"
# errexit off around the pipeline, and no `|| true` after it: with pipefail,
# `|| true` would run on any failure and PIPESTATUS would then be true's 0,
# so a failing test would pass the command.
set +e
PATH="$no_apt:$PATH" cargo test --workspace --no-fail-fast 2>&1 | tee /tmp/nodewarden-test.log | grep -E '^(test result|running|     Running|.*FAILED|.*panicked)'
status=${PIPESTATUS[0]}
set -e
if [ "$status" != 0 ]; then
    grep -E -A30 '^failures:' /tmp/nodewarden-test.log | head -200
    exit "$status"
fi
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
        set +e
        PATH="$no_apt:$PATH" NODEWARDEN_TEST_AGENT="$PWD/$packaged_agent" cargo test -p nodewarden-tests --no-fail-fast \
            --test power_e2e --test power_ups_delay_e2e \
            --test commands --test ups_e2e --test link --test trust 2>&1 |
            tee /tmp/nodewarden-test-packaged.log | grep -E '^(test result|.*FAILED|.*panicked)'
        status=${PIPESTATUS[0]}
        set -e
        if [ "$status" != 0 ]; then
            grep -E -A30 '^failures:' /tmp/nodewarden-test-packaged.log | head -200
            exit "$status"
        fi
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
