#!/bin/sh
# Installs Debian's NUT (upsd, upsc, dummy-ups, riello_ser, nutdrv_qx) for
# the ups_latency bench; the tests get it from scripts/test.sh.
exec sh "$(dirname "$0")/install-test-tools.sh" nut
