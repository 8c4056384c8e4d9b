#!/bin/bash
# Runs a document's `sh run` blocks, in order, inside a Debian root, so the
# install guide cannot drift from the packages (packaging/test-debs.sh runs
# docs/install.md this way in each Debian root it makes).
#
#   packaging/doc-blocks.sh DOC ROOT DEBDIR
#
# A block is a fenced code block whose info string is exactly `sh run`; every
# other block is an example and is not run. Each block runs in its own
# `bash -euo pipefail` as root in ROOT, from the directory holding the .debs
# (DEBDIR is copied to ROOT/tmp/debs), with SERVER=127.0.0.1 and TOKEN set
# to the last join token (NW1::...) any earlier block printed.
#
# There is no systemd running in the root, so the run gets two stand-ins in
# /usr/local: `sudo` (the run is root already) and `systemctl`, which starts
# a unit's ExecStart= as its User= with its StateDirectory= and
# RuntimeDirectory=, and, like systemctl for a Type=notify unit, returns once
# the daemon is ready (the collector's admin socket answers; the agent has
# connected). The daemons are stopped and the stand-ins removed at the end.
#
# Prints one "ok - ..." or "FAIL - ..." line per block (and each block's
# output, indented); exits non-zero if any block failed.
set -uo pipefail

[ $# = 3 ] || { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
doc="$1" root="$2" debdir="$3"
blocks="$(mktemp -d)"
trap 'rm -rf "$blocks"' EXIT

# Each block to its own file, named by its line in the document.
awk -v out="$blocks" '
    /^```sh run$/ { n++; file = sprintf("%s/%02d", out, n); print FILENAME ":" NR + 1 > (file ".where"); inside = 1; next }
    /^```/ && inside { inside = 0; close(file); next }
    inside { print > file }
' "$doc"
count="$(find "$blocks" -name '*.where' | wc -l)"
[ "$count" -gt 0 ] || { echo "FAIL - $doc has no \`sh run\` blocks"; exit 1; }

mkdir -p "$root/tmp/debs" "$root/usr/local/bin" "$root/usr/local/sbin" "$root/run/doc-test" "$root/etc/apt/apt.conf.d"
cp "$debdir"/*.deb "$root/tmp/debs/"
# The reader answers apt's "Do you want to continue?"; the test says yes.
echo 'APT::Get::Assume-Yes "true";' >"$root/etc/apt/apt.conf.d/90doc-test"
printf '#!/bin/sh\n# doc-blocks.sh stand-in: the run is root already\nexec "$@"\n' >"$root/usr/local/bin/sudo"
cat >"$root/usr/local/sbin/systemctl" <<'STANDIN'
#!/bin/bash
# doc-blocks.sh stand-in for systemctl in a root without systemd.
verb="${1:-}" unit="${2%.service}"
unit_file="/lib/systemd/system/$unit.service"
pid_file="/run/doc-test/$unit.pid"
key() { sed -n "s/^$1=//p" "$unit_file"; }
stop() {
    [ -f "$pid_file" ] || return 0
    local pid; pid="$(cat "$pid_file")"
    kill "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$pid_file"
}
ready() { # like Type=notify: return when the daemon can be used
    case "$unit" in
    nodewarden) [ -S /run/nodewarden/admin.sock ] && nodewarden nodes >/dev/null 2>&1 ;;
    nodewarden-agent) grep -q "connected to collector" "/run/doc-test/$unit.log" ;;
    *) true ;;
    esac
}
case "$verb" in
start | restart)
    [ -f "$unit_file" ] || { echo "Unit $unit.service not found." >&2; exit 5; }
    stop
    user="$(key User)"
    for d in $(key StateDirectory); do install -d -o "$user" -g "$user" -m 0750 "/var/lib/$d"; done
    for d in $(key RuntimeDirectory); do install -d -o "$user" -g "$user" -m 0750 "/run/$d"; done
    [ "$unit" = nodewarden ] && rm -f /run/nodewarden/admin.sock
    # shellcheck disable=SC2046  # ExecStart= is a command line
    setpriv --reuid="$user" --regid="$user" --init-groups $(key ExecStart) >"/run/doc-test/$unit.log" 2>&1 &
    echo $! >"$pid_file"
    for _ in $(seq 100); do
        ready && exit 0
        kill -0 "$(cat "$pid_file")" 2>/dev/null || { echo "$unit.service failed:" >&2; cat "/run/doc-test/$unit.log" >&2; exit 1; }
        sleep 0.1
    done
    echo "$unit.service not ready after 10 s:" >&2; cat "/run/doc-test/$unit.log" >&2; exit 1 ;;
stop) stop ;;
*) echo "systemctl stand-in: '$*' ignored" ;;
esac
STANDIN
chmod 755 "$root/usr/local/bin/sudo" "$root/usr/local/sbin/systemctl"
mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"

failed=0
token=""
for where_file in "$blocks"/*.where; do
    block="${where_file%.where}"
    where="$(cat "$where_file")"
    first="$(grep -m 1 -v '^\s*$' "$block")"
    out="$(chroot "$root" /usr/bin/env -i HOME=/root DEBIAN_FRONTEND=noninteractive \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        SERVER=127.0.0.1 TOKEN="$token" \
        bash -euo pipefail -c "cd /tmp/debs; $(cat "$block")" 2>&1 </dev/null)"
    rc=$?
    if [ $rc = 0 ]; then echo "ok - $where: $first"; else echo "FAIL - $where: $first (exit $rc)"; failed=$((failed + 1)); fi
    printf '%s\n' "$out" | sed 's/^/    /'
    t="$(grep -o 'NW1::[^ ]*' <<<"$out" | tail -n 1)"
    [ -n "$t" ] && token="$t"
done

# Stop what the stand-in started (by the ids it recorded), then clean up.
for pid_file in "$root"/run/doc-test/*.pid; do
    [ -f "$pid_file" ] && kill "$(cat "$pid_file")" 2>/dev/null
done
sleep 0.5
umount "$root/proc"
rm -rf "$root/run/doc-test" "$root/tmp/debs" "$root/usr/local/bin/sudo" "$root/usr/local/sbin/systemctl" \
    "$root/etc/apt/apt.conf.d/90doc-test"
echo "$((count - failed)) of $count blocks of $doc ran"
[ "$failed" = 0 ]
