#!/bin/sh
# Installs the official Prometheus Python client (Debian python3-prometheus-client,
# ~200 kB), whose text-format parser checks nodewarden's /metrics output.
# Idempotent: does nothing when the module already imports.
set -eu
if /usr/bin/python3 -c 'import prometheus_client.parser' 2>/dev/null; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends python3-prometheus-client >/dev/null ||
    { apt-get update >/dev/null && apt-get install -y --no-install-recommends python3-prometheus-client >/dev/null; }
/usr/bin/python3 -c 'import prometheus_client.parser'
