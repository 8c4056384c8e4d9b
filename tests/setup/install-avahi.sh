#!/bin/sh
# Installs Debian's avahi-daemon (and iproute2's `ip`) for the Multicast DNS
# test, agent/tests/mdns_avahi.rs: it runs its own avahi-daemon in a private
# network namespace; the system service is not used.
# Idempotent: does nothing when both are already there.
set -eu
need=""
[ -x /usr/sbin/avahi-daemon ] || need="$need avahi-daemon"
command -v ip >/dev/null 2>&1 || need="$need iproute2"
[ -z "$need" ] && exit 0
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086
apt-get install -y --no-install-recommends $need >/dev/null || {
    apt-get update >/dev/null
    apt-get install -y --no-install-recommends $need >/dev/null
}
