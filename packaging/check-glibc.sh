#!/bin/bash
# The newest glibc symbol version each binary needs, against a limit.
#
#   packaging/check-glibc.sh [--max 2.31] BINARY...   table; exit 1 if over
#   packaging/check-glibc.sh --print BINARY           just the version
#
# 2.31 is Debian 11 bullseye and Raspberry Pi OS bullseye, the oldest systems
# nodewarden supports. readelf reads any architecture's ELF, so this checks
# cross-built binaries on the build machine.
set -euo pipefail

max=2.31
print_only=false
case "${1:-}" in
--max) max="$2"; shift 2 ;;
--print) print_only=true; shift ;;
esac
[ $# -gt 0 ] || { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

needed_glibc() {
    readelf -V -W "$1" | grep -o 'Name: GLIBC_[0-9.]*' | sed 's/Name: GLIBC_//' | sort -uV | tail -n 1 || true
}

# The symbols that need a version newer than the limit, to say why.
symbols_over() {
    { readelf --dyn-syms -W "$1" | grep -o '[A-Za-z0-9_]*@GLIBC_[0-9.]*' || true; } | sort -u |
        while IFS=@ read -r sym ver; do
            v="${ver#GLIBC_}"
            if [ "$(printf '%s\n%s\n' "$v" "$max" | sort -V | tail -n 1)" != "$max" ]; then
                printf '%s@%s ' "$sym" "$v"
            fi
        done
}

status=0
$print_only || printf '%-60s %-10s %-8s %s\n' binary machine glibc verdict
for bin in "$@"; do
    if [ ! -f "$bin" ]; then
        echo "check-glibc: $bin: no such file" >&2
        status=1
        continue
    fi
    v="$(needed_glibc "$bin")"
    if [ -z "$v" ]; then
        readelf -d "$bin" | grep -q NEEDED && v=none || v=static
    fi
    if $print_only; then
        echo "$v"
        continue
    fi
    machine="$(readelf -h "$bin" | sed -n 's/^ *Machine: *//p' | awk '{print $NF}')"
    verdict=ok
    case "$v" in
    none | static) ;;
    *)
        if [ "$(printf '%s\n%s\n' "$v" "$max" | sort -V | tail -n 1)" != "$max" ]; then
            verdict="TOO NEW (> $max): $(symbols_over "$bin")"
            status=1
        fi
        ;;
    esac
    printf '%-60s %-10s %-8s %s\n' "$bin" "$machine" "$v" "$verdict"
done
exit $status
