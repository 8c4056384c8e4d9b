#!/bin/sh
# Installs the official Prometheus Python client (Debian
# python3-prometheus-client, ~200 kB), whose text-format parser checks
# nodewarden's /metrics output. Kept for callers that name it; the test
# command installs it with the rest (install-test-tools.sh).
sh "$(dirname "$0")/install-test-tools.sh" prometheus
/usr/bin/python3 -c 'import prometheus_client.parser'
