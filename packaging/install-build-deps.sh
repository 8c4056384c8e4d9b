#!/bin/sh
# Installs what building and testing the .deb packages needs, and nothing that
# is already there: Debian's cross linkers and C compilers (ring, used by
# rustls later, compiles C), the target C libraries for qemu-user, dpkg-dev,
# systemd-analyze, the rustup targets, and zig (cargo-zigbuild) for
# glibc-2.31 builds. Idempotent; safe to run on every CI start.
# Usage: packaging/install-build-deps.sh [amd64,arm64,armhf] [zig|gcc] [musl|glibc]
# (the third: the agent's libc, as in build-debs.sh --agent-libc)
set -eu

targets="${1:-amd64,arm64,armhf}"
toolchain="${2:-zig}"
agent_libc="${3:-musl}"

need=""
want() { # want PACKAGE [COMMAND-OR-FILE that proves it is there]
    if [ -n "${2:-}" ] && { command -v "$2" >/dev/null 2>&1 || [ -e "$2" ]; }; then
        return 0
    fi
    if ! dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null | grep -qx installed; then
        need="$need $1"
    fi
}

want dpkg-dev dpkg-architecture
want fakeroot fakeroot
want binutils objdump
want systemd systemd-analyze
want python3 python3
if [ "$agent_libc" = musl ]; then case ",$targets," in *,amd64,*) want gcc gcc ;; esac; fi
want file file
case ",$targets," in *,arm64,*|*,armhf,*) want qemu-user-static ;; esac
case ",$targets," in *,arm64,*)
    want gcc-aarch64-linux-gnu aarch64-linux-gnu-gcc
    want libc6-arm64-cross /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1
    want libc6-dev-arm64-cross /usr/aarch64-linux-gnu/lib/Scrt1.o ;;
esac
case ",$targets," in *,armhf,*)
    want gcc-arm-linux-gnueabihf arm-linux-gnueabihf-gcc
    want libc6-armhf-cross /usr/arm-linux-gnueabihf/lib/ld-linux-armhf.so.3
    want libc6-dev-armhf-cross /usr/arm-linux-gnueabihf/lib/Scrt1.o ;;
esac

if [ -n "$need" ]; then
    echo "install-build-deps: apt-get install$need" >&2
    # A fresh machine may never have run apt-get update.
    if ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; then
        apt-get update -qq
    fi
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null; }
fi

installed_targets="$(rustup target list --installed 2>/dev/null || true)"
add_target() {
    if ! echo "$installed_targets" | grep -qx "$1"; then
        echo "install-build-deps: rustup target add $1" >&2
        rustup target add "$1" >&2
    fi
}
for arch in $(echo "$targets" | tr ',' ' '); do
    case "$arch" in
        amd64) add_target x86_64-unknown-linux-gnu
               if [ "$agent_libc" = musl ]; then add_target x86_64-unknown-linux-musl; fi ;;
        arm64) add_target aarch64-unknown-linux-gnu
               if [ "$agent_libc" = musl ]; then add_target aarch64-unknown-linux-musl; fi ;;
        armhf) add_target armv7-unknown-linux-gnueabihf ;;
        *) echo "install-build-deps: unknown architecture '$arch' (amd64, arm64, armhf)" >&2; exit 2 ;;
    esac
done

# zig links against a chosen glibc (2.31: Debian 11 / Pi OS bullseye) for
# every target, where Debian 12's cross toolchains link against 2.36. Both
# come as prebuilt binaries inside PyPI packages; pinned for repeatable builds.
if [ "$toolchain" = zig ] && ! command -v cargo-zigbuild >/dev/null 2>&1; then
    echo "install-build-deps: pip install ziglang cargo-zigbuild" >&2
    python3 -m pip install --quiet --disable-pip-version-check \
        "ziglang==0.17.1" "cargo-zigbuild==0.24.0" >&2
fi
