#!/usr/bin/env bash
# Every test nodewarden has, on a fresh Debian 12 machine. Installs what the
# tests need (NUT's upsd and drivers, the Prometheus client parser, the
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
export DEBIAN_FRONTEND=noninteractive
need=()
command -v cc >/dev/null || need+=(build-essential)
[ -x /lib/nut/nutdrv_qx ] && [ -x /lib/nut/upsd ] && command -v upsc >/dev/null || need+=(nut-server nut-client)
python3 -c 'import prometheus_client' 2>/dev/null || need+=(python3-prometheus-client)
command -v script >/dev/null || need+=(bsdutils)
if [ ${#need[@]} -gt 0 ]; then
    echo "test: installing ${need[*]}"
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

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
cargo test --workspace --no-fail-fast 2>&1 | tee /tmp/nodewarden-test.log | grep -E '^(test result|running|     Running|.*FAILED|.*panicked)'
status=${PIPESTATUS[0]}
set -e
if [ "$status" != 0 ]; then
    grep -E -A30 '^failures:' /tmp/nodewarden-test.log | head -200
    exit "$status"
fi

rm -f /tmp/nodewarden-test-packaged.log
if [ -x packaging/test-debs.sh ]; then
    echo "== packages"
    packaging/test-debs.sh --quick
    # The amd64 package's agent is a static musl build, not the debug glibc
    # binary the tests above ran: the end-to-end suites again, with it.
    packaged_agent=target/x86_64-unknown-linux-musl/release/nodewarden-agent
    if [ "$(uname -m)" = x86_64 ] && [ -x "$packaged_agent" ]; then
        echo "== end to end with the packaged agent ($packaged_agent)"
        set +e
        NODEWARDEN_TEST_AGENT="$PWD/$packaged_agent" cargo test -p nodewarden-tests --no-fail-fast \
            --test power_e2e --test commands --test ups_e2e --test link --test trust 2>&1 |
            tee /tmp/nodewarden-test-packaged.log | grep -E '^(test result|.*FAILED|.*panicked)'
        status=${PIPESTATUS[0]}
        set -e
        if [ "$status" != 0 ]; then
            grep -E -A30 '^failures:' /tmp/nodewarden-test-packaged.log | head -200
            exit "$status"
        fi
    fi
fi

# A short bounded run of every parser fuzz target (unoptimised build: the
# build is what costs here). Long runs: fuzz/run.sh SECONDS.
fuzz_seconds="${NODEWARDEN_FUZZ_SECONDS:-20}"
echo "== fuzz (${fuzz_seconds}s per target)"
fuzz/run.sh --quick "$fuzz_seconds"
passed=$(grep -Eo 'test result: ok\. [0-9]+ passed' /tmp/nodewarden-test.log | awk '{s+=$4} END {print s+0}')
again=$(grep -Eos 'test result: ok\. [0-9]+ passed' /tmp/nodewarden-test-packaged.log | awk '{s+=$4} END {print s+0}')
echo "$passed passed, 0 failed (and $again of them again with the packaged agent)"
