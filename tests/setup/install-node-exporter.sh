#!/bin/sh
# Installs Debian's prometheus-node-exporter for agent/benches/footprint.rs.
# Idempotent: does nothing when the binary is already there.
#
# The package's postinst starts its own service when systemd (or sysv-rc) runs;
# the bench starts node_exporter itself on a free loopback port, so any daemon
# the package started is stopped and disabled, and killed by exact pid when no
# init system did it for us.
set -eu
BIN=/usr/bin/prometheus-node-exporter
if [ ! -x "$BIN" ]; then
    # Snapshot what already ran so only the package's own daemon is killed.
    before=$(pgrep -x prometheus-node || true)
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends prometheus-node-exporter >/dev/null || {
        apt-get update >/dev/null
        apt-get install -y --no-install-recommends prometheus-node-exporter >/dev/null
    }
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemctl disable --now prometheus-node-exporter.service \
            prometheus-node-exporter-apt.timer prometheus-node-exporter-smartmon.timer \
            prometheus-node-exporter-nvme.timer >/dev/null 2>&1 || true
    fi
    for pid in $(pgrep -x prometheus-node || true); do
        case " $before " in
            *" $pid "*) ;;
            *) if [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$BIN" ]; then kill "$pid"; fi ;;
        esac
    done
fi
test -x "$BIN"
