#!/bin/sh
# Installs, with one apt-get run, every program the tests need that Debian 12
# does not have out of the box. scripts/test.sh runs it once before
# `cargo test`; the tests never install anything themselves (two tests
# running apt at once fail on its lock): one that finds its tool missing
# fails naming this script.
#
#   sh tests/setup/install-test-tools.sh [GROUP...]    (as root)
#
# Groups (default: all of them):
#   nut        NUT's upsd, upsc and drivers (nutdrv_qx, dummy-ups,
#              riello_ser): tests/tests/nut_*.rs, gpser_nut.rs, the
#              ups_latency bench
#   avahi      avahi-daemon and iproute2's `ip`: agent/tests/mdns_avahi.rs
#              (it runs its own avahi-daemon in a private network namespace;
#              the system service is not used)
#   prometheus the official Prometheus Python client, whose text-format
#              parser checks the collector's /metrics output
#   nutclients NUT's clients that follow nodewarden's NUT server
#              (tests/tests/nut_server.rs): upsc, upslog, upscmd, upsrw, upsmon
#              (nut-client), PyNUTClient (python3-nut), and aionut, Home
#              Assistant's NUT library, from PyPI into target/nut-venv
#              (a venv, so the system Python is untouched)
#   tsdb       Prometheus 2.42 with promtool (its TSDB is what the collector's
#              writes are measured against; promtool checks /metrics and the
#              shipped alert rules, and a real Prometheus runs every dashboard
#              query: tests/tests/prometheus.rs) and strace (counts fsync
#              calls): the disk_writes bench in tests/benches/
#   browser    Debian's chromium, its WebDriver (chromium-driver) and
#              python3-selenium: the real-browser test of the status page
#              (tests/tests/web_browser.rs)
#   base       a C compiler, `script` (pseudo-terminals for NUT), `unshare`,
#              `setpriv`, `mount`
# kubectl (tests/tests/kubectl_fidelity.rs) is not in Debian's archive: see
# that test's message. Idempotent: installs only what is missing.
set -eu
groups="${*:-base nut avahi prometheus nutclients tsdb browser}"
repo="$(cd "$(dirname "$0")/../.." && pwd)"
venv=""
need=""
for group in $groups; do
    case "$group" in
    base)
        command -v cc >/dev/null 2>&1 || need="$need build-essential"
        command -v script >/dev/null 2>&1 || need="$need bsdutils"
        { command -v unshare && command -v setpriv; } >/dev/null 2>&1 || need="$need util-linux"
        command -v mount >/dev/null 2>&1 || need="$need mount"
        ;;
    nut)
        for p in /lib/nut/upsd /lib/nut/nutdrv_qx /lib/nut/dummy-ups /lib/nut/riello_ser; do
            [ -x "$p" ] || { need="$need nut-server"; break; }
        done
        command -v upsc >/dev/null 2>&1 || need="$need nut-client"
        ;;
    avahi)
        [ -x /usr/sbin/avahi-daemon ] || need="$need avahi-daemon"
        command -v ip >/dev/null 2>&1 || need="$need iproute2"
        ;;
    prometheus)
        /usr/bin/python3 -c 'import prometheus_client.parser' 2>/dev/null || need="$need python3-prometheus-client"
        ;;
    nutclients)
        for p in upsc upscmd upsrw upslog; do
            command -v $p >/dev/null 2>&1 || { need="$need nut-client"; break; }
        done
        [ -x /usr/sbin/upsmon ] || need="$need nut-client"
        /usr/bin/python3 -c 'import PyNUT' 2>/dev/null || need="$need python3-nut"
        /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null || need="$need python3-venv"
        "$repo/target/nut-venv/bin/python" -c 'import aionut' 2>/dev/null || venv="$repo/target/nut-venv"
        ;;
    tsdb)
        { command -v prometheus && command -v promtool; } >/dev/null 2>&1 || need="$need prometheus"
        command -v strace >/dev/null 2>&1 || need="$need strace"
        ;;
    browser)
        command -v chromium >/dev/null 2>&1 || need="$need chromium"
        command -v chromedriver >/dev/null 2>&1 || need="$need chromium-driver"
        /usr/bin/python3 -c 'import selenium' 2>/dev/null || need="$need python3-selenium"
        ;;
    *)
        echo "install-test-tools: unknown group '$group' (base, nut, avahi, prometheus, nutclients, tsdb, browser)" >&2
        exit 2
        ;;
    esac
done
# aionut is not in Debian: pip, into a venv under target/ (no root needed).
install_aionut() {
    [ -n "$venv" ] || return 0
    echo "install-test-tools: pip install aionut into $venv" >&2
    /usr/bin/python3 -m venv "$venv" && "$venv/bin/pip" install -q aionut
}
if [ -z "$need" ]; then
    install_aionut
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "install-test-tools: needs root to install$need: sudo sh $0 $*" >&2
    exit 1
fi
echo "install-test-tools: apt-get install$need" >&2
export DEBIAN_FRONTEND=noninteractive
# A fresh machine may never have run apt-get update.
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $need >/dev/null 2>&1 || {
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends $need >/dev/null
}
install_aionut
