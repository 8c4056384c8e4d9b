#!/bin/bash
# shellcheck disable=SC2016  # the bash -c script takes its arguments as $0..
# Builds the Debian packages: nodewarden-agent and nodewarden for each
# architecture, into dist/.
#
#   packaging/build-debs.sh [--targets amd64,arm64,armhf] [--out dist]
#                           [--packages agent,collector] [--profile release]
#                           [--toolchain zig|gcc] [--agent-libc musl|glibc]
#                           [--version 0.1.0-1]
#
# --agent-libc musl (default): the amd64 and arm64 agents are static musl
#   binaries (Rust's self-contained musl, linked by Debian's gcc): no shared
#   library to map, which is what keeps the agent's RSS under 4 MB, and no
#   glibc floor. The armhf agent stays glibc: rustup has no musl std for
#   armv7 on our mirror. --agent-libc glibc builds every agent like the
#   collector.
# --toolchain zig (default): cargo-zigbuild links the glibc binaries against
#   glibc 2.31, so the packages install on Debian 11 / Raspberry Pi OS
#   bullseye and newer.
# --toolchain gcc: Debian 12's cross gcc (.cargo/config.toml); the glibc
#   binaries then need glibc 2.34+ (Debian 12 / Pi OS bookworm and newer),
#   and the packages say so in Depends.
# --profile: a cargo profile (release, or ci-cross for fast test builds).
# --version: the Debian version (default: the crate version with -1).
# Prints a table of binary and package sizes at the end.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
targets=amd64,arm64,armhf
out="$repo/dist"
packages=agent,collector
profile=release
toolchain=zig
agent_libc=musl
version=""

usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
    --targets) targets="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --packages) packages="$2"; shift 2 ;;
    --profile) profile="$2"; shift 2 ;;
    --toolchain) toolchain="$2"; shift 2 ;;
    --agent-libc) agent_libc="$2"; shift 2 ;;
    --version) version="$2"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "build-debs: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
done
case "$toolchain" in zig | gcc) ;; *) echo "build-debs: --toolchain is zig or gcc" >&2; exit 2 ;; esac
case "$agent_libc" in musl | glibc) ;; *) echo "build-debs: --agent-libc is musl or glibc" >&2; exit 2 ;; esac
mkdir -p "$out"
out="$(cd "$out" && pwd)"

triple_of() {
    case "$1" in
    amd64) echo x86_64-unknown-linux-gnu ;;
    arm64) echo aarch64-unknown-linux-gnu ;;
    armhf) echo armv7-unknown-linux-gnueabihf ;;
    *) echo "build-debs: unknown architecture '$1' (amd64, arm64, armhf)" >&2; return 2 ;;
    esac
}

# The Rust target a package is built for on an architecture.
package_triple_of() { # package arch
    if [ "$1" = agent ] && [ "$agent_libc" = musl ]; then
        case "$2" in
        amd64) echo x86_64-unknown-linux-musl; return ;;
        arm64) echo aarch64-unknown-linux-musl; return ;;
        esac
    fi
    triple_of "$2"
}

# Runs a target binary on this machine: natively, or under qemu-user.
runner_of() {
    case "$1" in
    amd64) [ "$(uname -m)" = x86_64 ] && echo "" || echo "qemu-x86_64-static" ;;
    arm64) echo "qemu-aarch64-static -L /usr/aarch64-linux-gnu" ;;
    armhf) echo "qemu-arm-static -L /usr/arm-linux-gnueabihf" ;;
    esac
}

crate_dir_of() { case "$1" in agent) echo agent ;; collector) echo collector ;; *) echo "build-debs: unknown package '$1' (agent, collector)" >&2; return 2 ;; esac; }
cargo_pkg_of() { case "$1" in agent) echo nodewarden-agent ;; collector) echo nodewarden ;; esac; }
bin_of() { cargo_pkg_of "$1"; }

"$here/install-build-deps.sh" "$targets" "$toolchain" "$agent_libc"

for p in ${packages//,/ }; do crate_dir_of "$p" >/dev/null; done

target_dir="$(cd "$repo" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
timings=()

# Where a package's binary for an architecture lands.
bin_dir_of() { echo "$target_dir/$(package_triple_of "$1" "$2")/$profile"; }

# build TRIPLE ARCH CARGO-ARGS...: one cargo invocation for one target.
build() {
    local triple="$1" arch="$2"
    shift 2
    if [ "$toolchain" = zig ] && [[ "$triple" != *-musl* ]]; then
        # ring (rustls) compiles C: zig cc builds it against the same glibc.
        (cd "$repo" && cargo zigbuild --locked --profile "$profile" --target "$triple.2.31" "$@")
        return
    fi
    # Debian's gcc compiles ring's C and links. For a musl target it links
    # Rust's self-contained musl (its crt objects and libc.a): on x86_64
    # rustc makes that a static-pie, on aarch64 a static executable.
    local cc t="${triple//-/_}"
    cc="$(case "$arch" in arm64) echo aarch64-linux-gnu-gcc ;; armhf) echo arm-linux-gnueabihf-gcc ;; *) echo gcc ;; esac)"
    env "CC_$t=$cc" "AR_$t=${cc%gcc}ar" "CARGO_TARGET_${t^^}_LINKER=$cc" \
        bash -c 'cd "$0" && cargo build --locked --profile "$1" --target "$2" "${@:3}"' \
        "$repo" "$profile" "$triple" "$@"
}

for arch in ${targets//,/ }; do
    start=$(date +%s)
    # Packages that share a target are built in one invocation.
    declare -A by_triple=()
    for p in ${packages//,/ }; do
        t="$(package_triple_of "$p" "$arch")"
        by_triple[$t]="${by_triple[$t]:-} -p $(cargo_pkg_of "$p")"
    done
    for t in "${!by_triple[@]}"; do
        # shellcheck disable=SC2086  # the -p list splits on purpose
        build "$t" "$arch" ${by_triple[$t]}
    done
    unset by_triple
    timings+=("$arch: $(($(date +%s) - start))s")
done

# Shell completions and man pages come from the binaries themselves (clap):
# `<bin> completions bash|zsh|fish` and `<bin> manpage`. Run on the first
# architecture built (under qemu if it is not this machine's).
gen_root="$target_dir/packaging-gen"
rm -rf "$gen_root"
first_arch="${targets%%,*}"
runner="$(runner_of "$first_arch")"
for p in ${packages//,/ }; do
    bin="$(bin_of "$p")"
    gen="$gen_root/$p"
    mkdir -p "$gen"
    exe="$(bin_dir_of "$p" "$first_arch")/$bin"
    declare -A comp_dest=(
        [bash]="usr/share/bash-completion/completions/$bin"
        [zsh]="usr/share/zsh/vendor-completions/_$bin"
        [fish]="usr/share/fish/vendor_completions.d/$bin.fish"
    )
    for shell in bash zsh fish; do
        tmp="$(mktemp)"
        # shellcheck disable=SC2086
        if $runner "$exe" completions "$shell" >"$tmp" 2>/dev/null && [ -s "$tmp" ]; then
            install -D -m 0644 "$tmp" "$gen/${comp_dest[$shell]}"
        else
            echo "build-debs: WARNING: '$bin completions $shell' is not supported by this build; $bin ships without $shell completions" >&2
        fi
        rm -f "$tmp"
    done
    # One page per subcommand (`man nodewarden-drill`, `man nodewarden-agent-join`).
    tmp="$(mktemp -d)"
    # shellcheck disable=SC2086
    if $runner "$exe" manpage --dir "$tmp" >/dev/null 2>&1 && [ -s "$tmp/$bin.1" ]; then
        mkdir -p "$gen/usr/share/man/man1"
        for page in "$tmp"/*.1; do gzip -9n <"$page" >"$gen/usr/share/man/man1/$(basename "$page").gz"; done
    elif $runner "$exe" manpage >"$tmp/$bin.1" 2>/dev/null && [ -s "$tmp/$bin.1" ]; then
        mkdir -p "$gen/usr/share/man/man1"
        gzip -9n <"$tmp/$bin.1" >"$gen/usr/share/man/man1/$bin.1.gz"
        echo "build-debs: WARNING: '$bin manpage --dir' is not supported by this build; $bin ships its top-level man page only" >&2
    else
        echo "build-debs: WARNING: '$bin manpage' is not supported by this build; $bin ships without a man page" >&2
    fi
    rm -rf "$tmp"
done

debs=()
for arch in ${targets//,/ }; do
    for p in ${packages//,/ }; do
        args=(--crate "$(crate_dir_of "$p")" --arch "$arch" --bin-dir "$(bin_dir_of "$p" "$arch")"
            --extra-dir "$gen_root/$p" --out "$out")
        [ -n "$version" ] && args+=(--version "$version")
        debs+=("$(python3 "$here/mkdeb.py" "${args[@]}")")
    done
done

echo
echo "Build time per architecture ($toolchain, profile $profile): ${timings[*]}"
echo
printf '%-44s %-6s %12s %12s %8s\n' package arch binary deb glibc
for deb in "${debs[@]}"; do
    name="$(dpkg-deb -f "$deb" Package)"
    arch="$(dpkg-deb -f "$deb" Architecture)"
    case "$name" in nodewarden-agent) p=agent ;; *) p=collector ;; esac
    bin="$(bin_of "$p")"
    bin_dir="$(bin_dir_of "$p" "$arch")"
    glibc="$("$here/check-glibc.sh" --print "$bin_dir/$bin")"
    printf '%-44s %-6s %12s %12s %8s\n' "$(basename "$deb")" "$arch" \
        "$(stat -c %s "$bin_dir/$bin")" "$(stat -c %s "$deb")" "$glibc"
done
