#!/bin/sh
# Installs Debian's NUT (upsd, dummy-ups, riello_ser) for the NUT tests.
# Idempotent: does nothing when the programs are already there.
set -eu
if [ -x /lib/nut/nutdrv_qx ] && [ -x /lib/nut/upsd ] && [ -x /lib/nut/dummy-ups ] && [ -x /lib/nut/riello_ser ] && command -v upsc >/dev/null 2>&1; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends nut-server nut-client >/dev/null || {
    apt-get update >/dev/null
    apt-get install -y --no-install-recommends nut-server nut-client >/dev/null
}
