#!/bin/bash
# What each release-profile setting buys in binary size, for one binary on
# one target (default: the agent on arm64). Each step adds one setting to the
# one before; every step is a full build in its own target directory, so this
# takes a while (about 6 cold builds).
#
#   packaging/measure-profiles.sh [--package nodewarden-agent] [--arch arm64]
#
# Prints a markdown table. Settings come from CARGO_PROFILE_RELEASE_*
# variables, so Cargo.toml is not touched.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
package=nodewarden-agent
arch=arm64
while [ $# -gt 0 ]; do
    case "$1" in
    --package) package="$2"; shift 2 ;;
    --arch) arch="$2"; shift 2 ;;
    *) echo "measure-profiles: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
case "$arch" in
amd64) triple=x86_64-unknown-linux-gnu; strip_tool="strip" ;;
arm64) triple=aarch64-unknown-linux-gnu; strip_tool=aarch64-linux-gnu-strip ;;
armhf) triple=armv7-unknown-linux-gnueabihf; strip_tool=arm-linux-gnueabihf-strip ;;
*) echo "measure-profiles: unknown architecture '$arch'" >&2; exit 2 ;;
esac
"$here/install-build-deps.sh" "$arch" gcc >&2

# name | settings added on top of cargo's default release profile
steps=(
    "default release (opt-level=3, thin local LTO, 16 codegen units)|OPT_LEVEL=3 LTO=false CODEGEN_UNITS=16 STRIP=none"
    "+ lto=true (fat)|OPT_LEVEL=3 LTO=true CODEGEN_UNITS=16 STRIP=none"
    "+ codegen-units=1|OPT_LEVEL=3 LTO=true CODEGEN_UNITS=1 STRIP=none"
    "+ opt-level=s|OPT_LEVEL=s LTO=true CODEGEN_UNITS=1 STRIP=none"
    "+ opt-level=z (Cargo.toml's release, unstripped)|OPT_LEVEL=z LTO=true CODEGEN_UNITS=1 STRIP=none"
    "+ panic=abort (not used: a task's panic must not kill the agent)|OPT_LEVEL=z LTO=true CODEGEN_UNITS=1 STRIP=none PANIC=abort"
)

printf '| %s | %s | %s | %s |\n' "profile step ($package, $arch)" "bytes" "stripped bytes" "build s"
printf '|---|---:|---:|---:|\n'
i=0
for step in "${steps[@]}"; do
    name="${step%%|*}"
    settings="${step#*|}"
    dir="$repo/target-size/$i"
    mkdir -p "$dir"
    env_args=()
    for s in $settings; do env_args+=("CARGO_PROFILE_RELEASE_${s%%=*}=${s#*=}"); done
    start=$(date +%s)
    (cd "$repo" && env "${env_args[@]}" CARGO_TARGET_DIR="$dir" \
        cargo build --locked --release --target "$triple" -p "$package" >"$dir.log" 2>&1) ||
        { echo "measure-profiles: build '$name' failed, see $dir.log" >&2; exit 1; }
    took=$(($(date +%s) - start))
    bin="$dir/$triple/release/$package"
    "$strip_tool" -o "$bin.stripped" "$bin"
    printf '| %s | %s | %s | %s |\n' "$name" "$(stat -c %s "$bin")" "$(stat -c %s "$bin.stripped")" "$took"
    i=$((i + 1))
done
