#!/bin/sh
# Installs NUT's drivers (nutdrv_qx under /lib/nut) for the fidelity tests.
# Idempotent: does nothing when the driver is already there.
set -eu
if [ -x /lib/nut/nutdrv_qx ]; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y nut-server >/dev/null || { apt-get update >/dev/null && apt-get install -y nut-server >/dev/null; }
test -x /lib/nut/nutdrv_qx
