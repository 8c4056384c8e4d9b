#!/bin/bash
# shellcheck disable=SC2016,SC2012  # bash -c scripts take their arguments as $1..; ls on our own file names
# Builds the Debian packages and proves they work:
#   - each .deb's control fields, conffiles, maintainer scripts, file modes;
#   - every systemd unit passes `systemd-analyze verify` with no warning;
#   - every glibc binary needs glibc <= 2.31 (Debian 11 / Pi OS bullseye);
#     the amd64 and arm64 agents are static (musl) and need none;
#   - the amd64 packages install into throwaway Debian 11 and 12 roots
#     (debootstrap, chroot), the binaries run there, the nodewarden user and
#     groups are made, an upgrade keeps an edited conffile, and purge leaves
#     nothing behind but what Debian policy allows;
#   - the arm64 and armhf agents run under qemu-user;
#   - docs/install.md's `sh run` blocks run in each root (doc-blocks.sh);
#   - man pages per subcommand and bash completions are installed and load.
#
#   packaging/test-debs.sh [--quick] [--keep]
#
# --quick (CI): amd64 packages fully tested, the agent built with the
#   release profile it ships with (the test command reruns the end-to-end
#   tests with it), the collector and the arm64/armhf agents with the faster
#   ci-cross profile (no LTO: half the collector's cold build time on two
#   cores); the arm agents run under qemu; only the Debian 11 root (the
#   oldest supported).
# --keep: leave the work directory (target/test-debs) for a look afterwards.
# Needs root (chroot, dpkg into the roots) and the network to Debian's mirror
# for debootstrap the first time; the roots are cached as tarballs.
# Ends with "N passed, M failed"; exits non-zero if anything failed.
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
quick=false
keep=false
for arg in "$@"; do
    case "$arg" in
    --quick) quick=true ;;
    --keep) keep=true ;;
    -h | --help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "test-debs: unknown argument '$arg'" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "test-debs: must run as root (chroot, dpkg --root)" >&2; exit 2; }

target_dir="$(cd "$repo" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
work="$target_dir/test-debs"
cache="$target_dir/test-debs-cache"
dist="$work/dist"
rm -rf "$work"
mkdir -p "$work" "$cache" "$dist"

passed=0
failed=0
failures=()
ok() { passed=$((passed + 1)); echo "ok - $1"; }
fail() { failed=$((failed + 1)); failures+=("$1"); echo "FAIL - $1"; [ -n "${2:-}" ] && printf '%s\n' "$2" | sed 's/^/    /'; }
# check NAME COMMAND...: passes when the command succeeds.
check() {
    local name="$1"; shift
    local output
    if output="$("$@" 2>&1)"; then ok "$name"; else fail "$name" "$output"; fi
}
section() { echo; echo "# $*"; }
phase_start=$(date +%s)
phase() { local now; now=$(date +%s); echo "# ($((now - phase_start))s) $*"; phase_start=$now; }

section "build-deps"
"$here/install-build-deps.sh" amd64,arm64,armhf zig || { echo "test-debs: cannot install build dependencies" >&2; exit 1; }
command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null

section "build"
start=$(date +%s)
if $quick; then
    "$here/build-debs.sh" --targets amd64 --packages agent --out "$dist" || exit 1
    "$here/build-debs.sh" --targets amd64 --packages collector --profile ci-cross --out "$dist" || exit 1
    "$here/build-debs.sh" --targets arm64,armhf --packages agent --profile ci-cross --out "$dist" || exit 1
    arm_profile=ci-cross
    suites=(bullseye)
else
    "$here/build-debs.sh" --targets amd64,arm64,armhf --out "$dist" || exit 1
    arm_profile=release
    suites=(bullseye bookworm)
fi
phase "built packages in $(($(date +%s) - start))s"
version="$(dpkg-deb -f "$(ls "$dist"/nodewarden-agent_*_amd64.deb | head -n 1)" Version)"

# ---------------------------------------------------------------- inspect
section "inspect each .deb"
for deb in "$dist"/*.deb; do
    base="$(basename "$deb" .deb)"
    IFS=_ read -r name ver arch <<<"$base"
    case "$name" in
    nodewarden-agent) bin=nodewarden-agent; conf=/etc/nodewarden/agent.toml ;;
    nodewarden) bin=nodewarden; conf=/etc/nodewarden/collector.toml ;;
    *) fail "$base: unexpected package name"; continue ;;
    esac
    check "$base: control fields match the file name" \
        test "$(dpkg-deb -f "$deb" Package)/$(dpkg-deb -f "$deb" Version)/$(dpkg-deb -f "$deb" Architecture)" = "$name/$ver/$arch"
    depends="$(dpkg-deb -f "$deb" Depends)"
    x="$work/x/$base"
    mkdir -p "$x"
    dpkg-deb -x "$deb" "$x"
    if [ "$("$here/check-glibc.sh" --print "$x/usr/bin/$bin")" = static ]; then
        check "$base: static binary, so depends on adduser and on no libc ($depends)" \
            bash -c '[[ "$1" =~ adduser ]] && ! [[ "$1" =~ libc6|libgcc ]]' _ "$depends"
    else
        check "$base: depends on adduser and libc6 (>= 2.x) no newer than 2.31 ($depends)" \
            bash -c '[[ "$1" =~ adduser ]] && v="$(sed -n "s/.*libc6 (>= \([0-9.]*\)).*/\1/p" <<<"$1")" && [ -n "$v" ] && [ "$(printf "%s\n2.31\n" "$v" | sort -V | tail -n 1)" = 2.31 ]' _ "$depends"
    fi
    if readelf -d "$x/usr/bin/$bin" | grep -q 'NEEDED.*libgcc_s'; then
        check "$base: needs libgcc_s.so.1, so depends on libgcc-s1" grep -q libgcc-s1 <<<"$depends"
    fi
    for field in Maintainer Description Section Priority Installed-Size; do
        check "$base: has $field" test -n "$(dpkg-deb -f "$deb" "$field")"
    done
    ctrl="$work/ctrl/$base"
    mkdir -p "$ctrl"
    dpkg-deb -e "$deb" "$ctrl"
    check "$base: conffiles is exactly $conf" test "$(cat "$ctrl/conffiles" 2>/dev/null)" = "$conf"
    for script in postinst prerm postrm; do
        check "$base: $script is 0755 and valid sh" bash -c '[ "$(stat -c %a "$1")" = 755 ] && sh -n "$1"' _ "$ctrl/$script"
    done
    listing="$(dpkg-deb -c "$deb")"
    check "$base: every file is owned by root:root" bash -c '! grep -v " root/root " <<<"$1"' _ "$listing"
    check "$base: /usr/bin/$bin is -rwxr-xr-x" grep -qE "^-rwxr-xr-x root/root .* \./usr/bin/$bin\$" <<<"$listing"
    check "$base: $conf is -rw-r--r--" grep -qE "^-rw-r--r-- root/root .* \.$conf\$" <<<"$listing"
    check "$base: units are -rw-r--r-- in /usr/lib/systemd/system" \
        bash -c 'grep " ./usr/lib/systemd/system/.*\.service$" <<<"$1" | grep -q . && ! grep " ./usr/lib/systemd/system/.*\.service$" <<<"$1" | grep -v "^-rw-r--r-- "' _ "$listing"
    check "$base: no file is group- or world-writable" bash -c '! grep -E "^.{5}w|^.{8}w" <<<"$1" | grep -v "^l"' _ "$listing"
    check "$base: has a copyright file" grep -q "\./usr/share/doc/$name/copyright\$" <<<"$listing"
done
# The amd64 and arm64 agents are static musl binaries (their RSS; see
# build-debs.sh --agent-libc); amd64's is a static-pie, so ASLR still moves it.
for deb in "$dist"/nodewarden-agent_*_amd64.deb "$dist"/nodewarden-agent_*_arm64.deb; do
    base="$(basename "$deb" .deb)"
    b="$work/x/$base/usr/bin/nodewarden-agent"
    check "$base: the agent is statically linked (no NEEDED, no interpreter)" \
        bash -c '! readelf -d "$1" | grep -q NEEDED && ! readelf -l "$1" | grep -q "program interpreter"' _ "$b"
    case "$base" in *_amd64)
        check "$base: the static agent is position-independent (ELF type DYN: ASLR applies)" \
            bash -c 'readelf -h "$1" | grep -q "Type: *DYN"' _ "$b" ;;
    esac
done
# nodewarden-k3s-shutdown belongs on every k3s node: the agent package ships
# it, and the collector package (installed beside it on the server) must not.
for deb in "$dist"/nodewarden-agent_*.deb; do
    check "$(basename "$deb" .deb): ships nodewarden-k3s-shutdown.service and /usr/lib/nodewarden/k3s-shutdown" \
        bash -c 'l="$(dpkg-deb -c "$1")"; grep -qE "^-rw-r--r-- .* \./usr/lib/systemd/system/nodewarden-k3s-shutdown\.service$" <<<"$l" && grep -qE "^-rwxr-xr-x .* \./usr/lib/nodewarden/k3s-shutdown$" <<<"$l"' _ "$deb"
done
for deb in "$dist"/nodewarden_*.deb; do
    check "$(basename "$deb" .deb): ships the Prometheus alert rules and the Grafana dashboard" \
        bash -c 'l="$(dpkg-deb -c "$1")"; grep -qE "^-rw-r--r-- .* \./usr/share/nodewarden/prometheus/nodewarden-rules\.yml$" <<<"$l" && grep -qE "^-rw-r--r-- .* \./usr/share/nodewarden/grafana/nodewarden\.json$" <<<"$l"' _ "$deb"
    a="$(ls "$dist"/nodewarden-agent_*_"$(dpkg-deb -f "$deb" Architecture)".deb)"
    check "$(basename "$deb" .deb): no file in common with $(basename "$a" .deb)" \
        bash -c 'both="$(comm -12 <(dpkg-deb -c "$1" | grep -v "^d" | awk "{print \$6}" | sort) <(dpkg-deb -c "$2" | grep -v "^d" | awk "{print \$6}" | sort) | grep -v "/copyright$\|/changelog")"; [ -z "$both" ] || { echo "$both"; false; }' _ "$deb" "$a"
done
check "six packages for three architectures, or the quick set" \
    bash -c 'n=$(ls "$1"/*.deb | wc -l); if $2; then [ "$n" = 4 ]; else [ "$n" = 6 ]; fi' _ "$dist" "$quick"

# ---------------------------------------------------------------- glibc
section "glibc floor (Debian 11 / Pi OS bullseye: 2.31)"
for deb in "$dist"/*.deb; do
    x="$work/x/$(basename "$deb" .deb)"
    for b in "$x"/usr/bin/*; do
        check "$(basename "$deb" .deb): $(basename "$b") needs glibc <= 2.31" "$here/check-glibc.sh" --max 2.31 "$b"
    done
done

# ---------------------------------------------------------------- units
section "systemd-analyze verify"
vroot="$work/verify-root"
mkdir -p "$vroot/usr/lib/systemd/system" "$vroot/usr/bin"
# The root needs systemd's own targets and the commands the units run.
cp -r /lib/systemd/system/. "$vroot/usr/lib/systemd/system/"
cp /usr/bin/true "$vroot/usr/bin/"
ln -sfn usr/bin "$vroot/bin"
ln -sfn usr/lib "$vroot/lib"
for deb in "$dist"/*_amd64.deb; do dpkg-deb -x "$deb" "$vroot"; done
units=()
for u in "$repo"/packaging/systemd/*.service; do units+=("$(basename "$u")"); done
for u in "${units[@]}"; do
    check "$u: systemd-analyze verify prints nothing" \
        bash -c 'out="$(systemd-analyze verify --man=no --root="$1" "$2" 2>&1)"; echo "$out"; [ -z "$out" ]' _ "$vroot" "$u"
done
# The check above must be able to fail: a misspelt key is only a warning.
sed 's/^WatchdogSec=/WatchdogSc=/' "$vroot/usr/lib/systemd/system/nodewarden-agent.service" \
    >"$vroot/usr/lib/systemd/system/nodewarden-typo.service"
check "a unit with a misspelt key is caught" \
    bash -c '[ -n "$(systemd-analyze verify --man=no --root="$1" nodewarden-typo.service 2>&1)" ]' _ "$vroot"
rm -f "$vroot/usr/lib/systemd/system/nodewarden-typo.service"
for u in nodewarden-agent.service nodewarden.service; do
    f="$vroot/usr/lib/systemd/system/$u"
    check "$u: Type=notify, watchdog, no crash loop on exit 78, sandboxed as user nodewarden" \
        bash -c 'for k in Type=notify WatchdogSec= Restart=on-failure RestartPreventExitStatus=78 StartLimitBurst= User=nodewarden ProtectSystem=strict ProtectHome=yes PrivateTmp=yes NoNewPrivileges=yes CapabilityBoundingSet=; do grep -q "^$k" "$1" || { echo "missing $k"; exit 1; }; done' _ "$f"
done
for u in nodewarden-agent.service nodewarden.service; do
    # systemd's exposure score, 0 (locked down) to 10; 2.5 leaves room for
    # the devices and sockets the daemons need and no more.
    check "$u: systemd-analyze security exposure <= 2.5" \
        systemd-analyze security --offline=true --root="$vroot" --threshold=25 "$u"
done
check "the k3s shutdown unit is not named k3s* (k3s-killall.sh stops those)" \
    bash -c '! ls "$1"/usr/lib/systemd/system/ | grep "^k3s"' _ "$vroot"
if command -v node >/dev/null; then
    cp "$repo/packaging/polkit/49-nodewarden.rules" "$work/polkit-rules.js"
    check "the polkit .rules file is valid JavaScript" node --check "$work/polkit-rules.js"
    # Run as polkit would: YES for user nodewarden and the three power-off
    # actions, nothing for anyone or anything else (reboot included).
    check "the polkit rule grants power-off, -multiple-sessions and -ignore-inhibit to nodewarden only" \
        node -e '
const fs = require("fs");
let rule;
const polkit = { Result: { YES: "yes" }, addRule: (f) => { rule = f; } };
eval(fs.readFileSync(process.argv[1], "utf8"));
const ask = (id, user) => rule({ id }, { user });
const p = "org.freedesktop.login1.";
for (const a of ["power-off", "power-off-multiple-sessions", "power-off-ignore-inhibit"]) {
    if (ask(p + a, "nodewarden") !== "yes") throw new Error(a + " not granted");
    if (ask(p + a, "pi") !== undefined) throw new Error(a + " granted to another user");
}
for (const a of ["reboot", "reboot-ignore-inhibit", "suspend", "halt"]) {
    if (ask(p + a, "nodewarden") !== undefined) throw new Error(a + " granted");
}' "$work/polkit-rules.js"
else
    echo "# SKIP polkit .rules syntax: no node on this machine"
fi
check "the polkit .pkla grants exactly the three power-off actions to unix-user:nodewarden" \
    python3 -c 'import configparser,sys; c=configparser.ConfigParser(); c.optionxform=str; c.read(sys.argv[1]); s=c[c.sections()[0]]; assert len(c.sections())==1; assert s["Identity"]=="unix-user:nodewarden"; assert sorted(s["Action"].split(";"))==["org.freedesktop.login1.power-off","org.freedesktop.login1.power-off-ignore-inhibit","org.freedesktop.login1.power-off-multiple-sessions"]; assert s["ResultAny"]=="yes"' \
    "$repo/packaging/polkit/49-nodewarden.pkla"

# ---------------------------------------------------------------- shutdown order
section "shutdown order: the agent stops after k3s, its clean shutdown and remote unmounts"
# On the way down systemd stops units in the reverse of their start order. The
# k3s installer writes k3s.service / k3s-agent.service to /etc/systemd/system
# with this ordering; an NFS share stands for the remote file systems.
mkdir -p "$vroot/etc/systemd/system"
for k in k3s k3s-agent; do
    printf '[Unit]\nDescription=%s (stub: the k3s installer'"'"'s ordering)\nWants=network-online.target\nAfter=network-online.target\n\n[Service]\nType=notify\nExecStart=/usr/bin/true\n' \
        "$k" >"$vroot/etc/systemd/system/$k.service"
done
printf '[Unit]\nDescription=an NFS share (stub)\n\n[Mount]\nWhat=nas:/export\nWhere=/mnt/nas\nType=nfs\nOptions=_netdev\n' \
    >"$vroot/etc/systemd/system/mnt-nas.mount"
check "the agent, k3s, k3s-agent, the k3s shutdown unit and an NFS mount verify together (no ordering cycle)" \
    bash -c 'out="$(systemd-analyze verify --man=no --root="$1" nodewarden-agent.service k3s.service k3s-agent.service nodewarden-k3s-shutdown.service mnt-nas.mount 2>&1)"; echo "$out"; [ -z "$out" ]' _ "$vroot"
check "nodewarden-agent.service reads Before=k3s.service k3s-agent.service nodewarden-k3s-shutdown.service remote-fs-pre.target, Wants=remote-fs-pre.target, After=network-online.target" \
    python3 - "$vroot/usr/lib/systemd/system/nodewarden-agent.service" <<'PY'
import sys
deps = {}
for line in open(sys.argv[1]):
    key, sep, value = line.strip().partition("=")
    if sep and key in ("Before", "After", "Wants"):
        deps.setdefault(key, set()).update(value.split())
down_after = {"k3s.service", "k3s-agent.service", "nodewarden-k3s-shutdown.service", "remote-fs-pre.target"}
assert down_after <= deps.get("Before", set()), deps
assert "remote-fs-pre.target" in deps.get("Wants", set()), deps
assert "network-online.target" in deps.get("After", set()), deps
assert not (down_after & deps.get("After", set())), deps
PY
# systemd's own ordering graph, not only the file: if the agent were to stop
# before UNIT (After=UNIT added), systemd must find an ordering cycle.
probe_dir="$vroot/etc/systemd/system/nodewarden-agent.service.d"
cycle_with() { # cycle_with LINE UNIT: the agent with LINE added forms a cycle with UNIT
    mkdir -p "$probe_dir"
    printf '[Unit]\n%s\n' "$1" >"$probe_dir/probe.conf"
    local out
    out="$(systemd-analyze verify --man=no --root="$vroot" nodewarden-agent.service "$2" 2>&1)"
    rm -rf "$probe_dir"
    grep -q "ordering cycle" <<<"$out"
}
no_cycle_with() { ! cycle_with "$@"; }
check "the cycle probe finds none in the units as shipped" no_cycle_with "Description=probe" mnt-nas.mount
for u in k3s.service k3s-agent.service nodewarden-k3s-shutdown.service mnt-nas.mount; do
    check "on the way down nodewarden-agent stops after $u (stopping before it is an ordering cycle)" cycle_with "After=$u" "$u"
done
check "on the way down the network stops after nodewarden-agent (stopping after it is an ordering cycle)" \
    cycle_with "Before=network-online.target" network-online.target
rm -f "$vroot"/etc/systemd/system/{k3s,k3s-agent}.service "$vroot/etc/systemd/system/mnt-nas.mount"
phase "inspected"

# ---------------------------------------------------------------- roots
make_root() { # make_root SUITE DIR: a minimal Debian, cached as a tarball
    local suite="$1" dir="$2"
    local tarball="$cache/$suite-minbase-amd64.tar.gz"
    if [ ! -s "$tarball" ]; then
        debootstrap --variant=minbase --include=adduser "$suite" "$cache/$suite.tmp" http://deb.debian.org/debian >"$cache/$suite.log" 2>&1 ||
            { echo "debootstrap $suite failed, see $cache/$suite.log" >&2; rm -rf "$cache/$suite.tmp"; return 1; }
        tar -C "$cache/$suite.tmp" -czf "$tarball" . && rm -rf "$cache/$suite.tmp"
    fi
    mkdir -p "$dir" && tar -C "$dir" -xzf "$tarball"
}
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"; }
file_list() { (cd "$root" && find . -xdev \( -path ./proc -o -path ./sys -o -path ./dev -o -path ./tmp -o -path ./run \) -prune -o -print | sort); }

# Settles how far a binary's subcommands have come: the skeletons have none.
supports() { # supports BIN SUBCOMMAND (run inside the root)
    in_root "$1" --help 2>/dev/null | grep -qw -- "$2"
}

repack_old() { # repack_old DEB OUT: the collector package as it was when it shipped the k3s unit
    local t
    t="$(mktemp -d)"
    dpkg-deb -R "$1" "$t"
    sed -i "s/^Version: .*/Version: ${version%-*}-0/" "$t/DEBIAN/control"
    install -D -m 644 "$repo/packaging/systemd/nodewarden-k3s-shutdown.service" "$t/usr/lib/systemd/system/nodewarden-k3s-shutdown.service"
    install -D -m 755 "$repo/packaging/lib/k3s-shutdown" "$t/usr/lib/nodewarden/k3s-shutdown"
    dpkg-deb --root-owner-group -Zxz -b "$t" "$2" >/dev/null
    rm -rf "$t"
}

repack_v2() { # repack_v2 DEB OUT: same package, next version, default config changed
    local t
    t="$(mktemp -d)"
    dpkg-deb -R "$1" "$t"
    sed -i "s/^Version: .*/Version: ${version%-*}-99/" "$t/DEBIAN/control"
    for c in "$t"/etc/nodewarden/*.toml; do printf '\n# (changed upstream in the next version)\n' >>"$c"; done
    dpkg-deb --root-owner-group -Zxz -b "$t" "$2" >/dev/null
    rm -rf "$t"
}

for suite in "${suites[@]}"; do
    section "install into Debian $suite (amd64)"
    root="$work/root-$suite"
    if ! make_root "$suite" "$root"; then
        fail "$suite: make a minimal root with debootstrap"
        continue
    fi
    phase "$suite root ready"
    mkdir -p "$root/tmp/debs"
    cp "$dist"/*_amd64.deb "$root/tmp/debs/"
    agent_deb="/tmp/debs/$(basename "$(ls "$dist"/nodewarden-agent_*_amd64.deb)")"
    coll_deb="/tmp/debs/$(basename "$(ls "$dist"/nodewarden_*_amd64.deb)")"
    before="$(file_list)"

    out="$(in_root dpkg -i "$agent_deb" "$coll_deb" 2>&1)"
    rc=$?
    if [ $rc = 0 ]; then ok "$suite: dpkg -i installs both packages"; else fail "$suite: dpkg -i installs both packages" "$out"; continue; fi
    check "$suite: postinst names the fix when polkit is missing" grep -q "fix: sudo apt install polkitd" <<<"$out"
    check "$suite: both packages are installed" \
        bash -c '[ "$(chroot "$1" dpkg-query -W -f="\${db:Status-Status} " nodewarden-agent nodewarden)" = "installed installed " ]' _ "$root"
    check "$suite: system user nodewarden exists with no login shell" \
        bash -c 'l="$(chroot "$1" getent passwd nodewarden)" && uid="$(cut -d: -f3 <<<"$l")" && [ "$uid" -lt 1000 ] && [ "$(cut -d: -f7 <<<"$l")" = /usr/sbin/nologin ]' _ "$root"
    check "$suite: nodewarden is in groups dialout and video" \
        bash -c 'g=" $(chroot "$1" id -nG nodewarden) "; [[ "$g" == *" dialout "* && "$g" == *" video "* ]]' _ "$root"
    check "$suite: /var/lib/nodewarden belongs to nodewarden, mode 750" \
        bash -c '[ "$(chroot "$1" stat -c "%U:%G %a" /var/lib/nodewarden)" = "nodewarden:nodewarden 750" ]' _ "$root"
    check "$suite: agent.toml and collector.toml are root:root 0644" \
        bash -c '[ "$(chroot "$1" stat -c "%U:%G %a" /etc/nodewarden/agent.toml /etc/nodewarden/collector.toml | sort -u)" = "root:root 644" ]' _ "$root"
    check "$suite: the unit is enabled the Debian way (multi-user.target.wants)" \
        test -L "$root/etc/systemd/system/multi-user.target.wants/nodewarden-agent.service"
    check "$suite: the opt-in k3s shutdown unit is not enabled" \
        bash -c '! ls "$1"/etc/systemd/system/*.wants/ 2>/dev/null | grep -q nodewarden-k3s-shutdown' _ "$root"
    check "$suite: a man page per subcommand (man nodewarden-drill, man nodewarden-agent-join)" \
        bash -c 'for p in nodewarden nodewarden-drill nodewarden-token-create nodewarden-agent nodewarden-agent-join nodewarden-agent-ups-probe; do gzip -t "$1/usr/share/man/man1/$p.1.gz" || exit 1; done' _ "$root"
    for bin in nodewarden nodewarden-agent; do
        check "$suite: the bash completion for $bin loads (complete -p $bin)" \
            in_root bash -c 'source "/usr/share/bash-completion/completions/$1" && complete -p "$1"' _ "$bin"
    done

    for bin in nodewarden-agent nodewarden; do
        if out="$(in_root "/usr/bin/$bin" --version 2>&1)"; then
            if [ -z "$out" ]; then
                ok "$suite: $bin --version runs (glibc ok); WARNING: it prints nothing yet"
            elif grep -q "${version%-*}" <<<"$out"; then
                ok "$suite: $bin --version says ${version%-*}"
            else
                fail "$suite: $bin --version says ${version%-*}" "$out"
            fi
        else
            fail "$suite: $bin --version runs" "$out"
        fi
    done

    # The config check and a config with a typo: exit 78 and file/line/key.
    for pair in "nodewarden-agent:agent.toml" "nodewarden:collector.toml"; do
        bin="${pair%%:*}" conf="/etc/nodewarden/${pair#*:}"
        if supports "$bin" check-config; then
            check "$suite: $bin check-config accepts the shipped $conf" in_root "/usr/bin/$bin" check-config "$conf"
            printf 'log_level = "info"\nsample_intervall = "5s"\n' >"$root/tmp/typo.toml"
            out="$(in_root "/usr/bin/$bin" check-config /tmp/typo.toml 2>&1)"
            rc=$?
            check "$suite: $bin check-config on a typo exits 78 naming file, line 2 and the key" \
                bash -c '[ "$1" = 78 ] && grep -q "/tmp/typo.toml:2:" <<<"$2" && grep -q sample_intervall <<<"$2"' _ "$rc" "$out"
        else
            echo "# SKIP $suite: $bin has no check-config subcommand yet"
        fi
    done

    # The k3s shutdown helper runs k3s-killall.sh where k3s put it, and is
    # harmless where there is none.
    out="$(in_root /usr/lib/nodewarden/k3s-shutdown 2>&1)"
    check "$suite: k3s-shutdown without k3s exits 0 and says so" \
        bash -c '[ "$1" = 0 ] && grep -q "no k3s-killall.sh found" <<<"$2"' _ "$?" "$out"
    mkdir -p "$root/usr/local/bin"
    printf '#!/bin/sh\necho killed >/tmp/k3s-killall-ran\n' >"$root/usr/local/bin/k3s-killall.sh"
    chmod 755 "$root/usr/local/bin/k3s-killall.sh"
    in_root /usr/lib/nodewarden/k3s-shutdown >/dev/null 2>&1
    check "$suite: k3s-shutdown runs /usr/local/bin/k3s-killall.sh" test -f "$root/tmp/k3s-killall-ran"
    rm -f "$root/usr/local/bin/k3s-killall.sh" "$root/tmp/k3s-killall-ran"

    section "upgrade keeps an edited conffile ($suite)"
    sed -i 's/^#node_name = ""$/node_name = "edited-by-test"/' "$root/etc/nodewarden/agent.toml"
    check "$suite: the test edit is in place" grep -qx 'node_name = "edited-by-test"' "$root/etc/nodewarden/agent.toml"
    repack_v2 "$dist/$(basename "$agent_deb")" "$root/tmp/debs/agent-v2.deb"
    repack_v2 "$dist/$(basename "$coll_deb")" "$root/tmp/debs/collector-v2.deb"
    out="$(in_root dpkg -i --force-confdef --force-confold /tmp/debs/agent-v2.deb /tmp/debs/collector-v2.deb 2>&1 </dev/null)"
    if [ $? = 0 ]; then ok "$suite: upgrade to ${version%-*}-99 installs non-interactively"; else fail "$suite: upgrade to ${version%-*}-99 installs non-interactively" "$out"; fi
    check "$suite: upgraded to ${version%-*}-99" \
        bash -c '[ "$(chroot "$1" dpkg-query -W -f="\${Version}" nodewarden-agent)" = "$2" ]' _ "$root" "${version%-*}-99"
    check "$suite: the admin's edit to agent.toml survived" grep -qx 'node_name = "edited-by-test"' "$root/etc/nodewarden/agent.toml"
    check "$suite: the new default agent.toml is beside it as .dpkg-dist" test -f "$root/etc/nodewarden/agent.toml.dpkg-dist"
    check "$suite: the unedited collector.toml was updated" grep -q "changed upstream" "$root/etc/nodewarden/collector.toml"

    section "remove and purge ($suite)"
    echo "history" >"$root/var/lib/nodewarden/marker"
    check "$suite: dpkg -r removes both" in_root dpkg -r nodewarden-agent nodewarden
    check "$suite: after remove the binaries are gone" bash -c '[ ! -e "$1/usr/bin/nodewarden" ] && [ ! -e "$1/usr/bin/nodewarden-agent" ]' _ "$root"
    check "$suite: after remove the config, data and user stay" \
        bash -c '[ -f "$1/etc/nodewarden/agent.toml" ] && [ -f "$1/var/lib/nodewarden/marker" ] && chroot "$1" getent passwd nodewarden >/dev/null' _ "$root"
    check "$suite: purge nodewarden-agent" in_root dpkg -P nodewarden-agent
    check "$suite: the user stays while the collector's config is still there" in_root getent passwd nodewarden
    check "$suite: purge nodewarden" in_root dpkg -P nodewarden
    check "$suite: after purge no nodewarden user or group" \
        bash -c '! chroot "$1" getent passwd nodewarden && ! chroot "$1" getent group nodewarden' _ "$root"
    rm -rf "$root/tmp/debs" "$root/tmp/typo.toml"
    after="$(file_list)"
    # Debian policy: purge removes everything but dpkg's own records and logs.
    # (/run and /tmp are not compared: they are tmpfs on a running system.)
    leftovers="$(comm -13 <(echo "$before") <(echo "$after") |
        grep -vE '^\./var/lib/dpkg/|^\./var/log/|^\./etc/(passwd|group|shadow|gshadow)-$|^\./var/cache/debconf/')"
    check "$suite: purge leaves nothing behind" test -z "$leftovers"
    [ -n "$leftovers" ] && sed 's/^/    left: /' <<<"$leftovers"

    section "the k3s unit moves from the collector package to the agent's ($suite)"
    mkdir -p "$root/tmp/debs"
    cp "$dist"/*_amd64.deb "$root/tmp/debs/"
    repack_old "$dist/$(basename "$coll_deb")" "$root/tmp/debs/collector-old.deb"
    check "$suite: a collector that still ships the k3s unit installs" in_root dpkg -i /tmp/debs/collector-old.deb
    check "$suite: the agent and the new collector install over it" in_root dpkg -i "$agent_deb" "$coll_deb"
    check "$suite: the k3s unit and its helper now belong to nodewarden-agent" \
        bash -c '[ "$(chroot "$1" dpkg-query -S /usr/lib/systemd/system/nodewarden-k3s-shutdown.service /usr/lib/nodewarden/k3s-shutdown | cut -d: -f1 | sort -u)" = nodewarden-agent ]' _ "$root"
    in_root dpkg -P nodewarden >/dev/null 2>&1
    check "$suite: purging the collector keeps the agent's k3s unit" \
        test -f "$root/usr/lib/systemd/system/nodewarden-k3s-shutdown.service" -a -x "$root/usr/lib/nodewarden/k3s-shutdown"
    in_root dpkg -P nodewarden-agent >/dev/null 2>&1
    rm -rf "$root/tmp/debs"

    # The install guide's `sh run` blocks, as a reader types them (see
    # packaging/doc-blocks.sh): install, init, join, UPS and roles config,
    # plan, purge. The collector listens on 7150/7151 of this machine.
    phase "$suite packages checked"
    section "docs/install.md, as written ($suite)"
    out="$("$here/doc-blocks.sh" "$repo/docs/install.md" "$root" "$dist" 2>&1)"
    while IFS= read -r line; do
        case "$line" in
        "ok - "*) l="${line#ok - }"; ok "$suite: ${l#"$repo"/}" ;;
        "FAIL - "*) l="${line#FAIL - }"; fail "$suite: ${l#"$repo"/}" "$out" ;;
        esac
    done <<<"$out"
    check "$suite: install.md's join reached the collector it started" grep -q 'joined https://127.0.0.1:7150 as node' <<<"$out"
    check "$suite: install.md's nodewarden nodes shows the node online" grep -qE '^    \S+ .* online$' <<<"$out"
    check "$suite: install.md's uninstall purged both packages" \
        bash -c '! chroot "$1" dpkg-query -W -f="\${db:Status-Status}\n" nodewarden nodewarden-agent 2>/dev/null | grep -q "^installed"' _ "$root"
    phase "$suite install.md run"
done

# ---------------------------------------------------------------- qemu
section "arm agents under qemu-user"
for arch in arm64 armhf; do
    deb="$(ls "$dist"/nodewarden-agent_*_"$arch".deb 2>/dev/null | head -n 1)"
    [ -n "$deb" ] || { fail "$arch: nodewarden-agent package was built"; continue; }
    x="$work/x/$(basename "$deb" .deb)"
    case "$arch" in
    arm64) run=(qemu-aarch64-static -L /usr/aarch64-linux-gnu) ;;
    armhf) run=(qemu-arm-static -L /usr/arm-linux-gnueabihf) ;;
    esac
    exe="$x/usr/bin/nodewarden-agent"
    check "$arch: nodewarden-agent is an ELF for $arch" \
        bash -c 'm="$(readelf -h "$1" | sed -n "s/^ *Machine: *//p")"; case "$2" in arm64) [[ "$m" == *AArch64* ]] ;; armhf) [[ "$m" == ARM ]] && readelf -h "$1" | grep -q "hard-float ABI" ;; esac' _ "$exe" "$arch"
    if out="$("${run[@]}" "$exe" --version 2>&1)"; then
        ok "$arch: nodewarden-agent --version runs under qemu ($arm_profile)${out:+: $out}"
    else
        fail "$arch: nodewarden-agent --version runs under qemu" "$out"
    fi
    fixtures="$repo/tests/fixtures/boards"
    if "${run[@]}" "$exe" --help 2>/dev/null | grep -qw sample && [ -d "$fixtures" ]; then
        host="$work/x/$(basename "$(ls "$dist"/nodewarden-agent_*_amd64.deb)" .deb)/usr/bin/nodewarden-agent"
        for board in "$fixtures"/*/; do
            b="$(basename "$board")"
            check "$arch: sample of fixture $b equals the amd64 agent's" \
                python3 "$here/compare-samples.py" \
                <("${run[@]}" "$exe" sample --sysroot "$board" --json) <("$host" sample --sysroot "$board" --json)
        done
    else
        echo "# SKIP $arch: no 'sample' subcommand or no tests/fixtures/boards yet; ran --version only"
    fi
done

$keep || rm -rf "$work"
echo
[ ${#failures[@]} -gt 0 ] && { echo "failed:"; printf '  %s\n' "${failures[@]}"; }
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
