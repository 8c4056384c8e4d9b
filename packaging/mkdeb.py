#!/usr/bin/env python3
"""Builds one .deb from a crate's [package.metadata.deb] section.

The section is in cargo-deb's format (assets, conf-files, maintainer-scripts,
depends with $auto, ...), so cargo-deb users get the same package; this
script needs only Python 3.11 and dpkg-deb, builds nothing with cargo, and
works for any target the binaries were built for:

  packaging/mkdeb.py --crate agent --arch arm64 \
      --bin-dir target/aarch64-unknown-linux-gnu/release \
      [--extra-dir DIR] [--version 0.1.0-1] [--out dist]

--extra-dir: a tree merged into the package (generated completions and man
pages). $auto in depends becomes what the ELF binaries need: libc6 at the
newest GLIBC_ symbol version they use, libgcc-s1 for unwinding.
"""

import argparse
import gzip
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Shared libraries a Rust binary may need, and the Debian package with them.
LIBRARY_PACKAGES = {
    "libc.so.6": "libc6",
    "libm.so.6": "libc6",
    "libdl.so.2": "libc6",
    "libpthread.so.0": "libc6",
    "librt.so.1": "libc6",
    "libutil.so.1": "libc6",
    "ld-linux-aarch64.so.1": "libc6",
    "ld-linux-armhf.so.3": "libc6",
    "ld-linux-x86-64.so.2": "libc6",
    "libgcc_s.so.1": "libgcc-s1",
}


class PackagingError(Exception):
    """A problem with the metadata or the inputs, said so a person can fix it."""


def load_metadata(crate_dir: Path) -> tuple[dict, dict, dict]:
    manifest = tomllib.loads((crate_dir / "Cargo.toml").read_text())
    workspace = tomllib.loads((REPO / "Cargo.toml").read_text())
    package = manifest["package"]
    shared = workspace.get("workspace", {}).get("package", {})

    def field(name: str):
        value = package.get(name)
        if isinstance(value, dict) and value.get("workspace"):
            return shared.get(name)
        return value

    pkg = {k: field(k) for k in ("name", "version", "description", "license", "repository")}
    meta = package.get("metadata", {}).get("deb")
    if meta is None:
        raise PackagingError(f"{crate_dir}/Cargo.toml has no [package.metadata.deb]")
    return pkg, meta, shared


def elf_needs(path: Path) -> tuple[set[str], str | None]:
    """NEEDED libraries and the newest GLIBC_ version `path` asks for."""
    dynamic = subprocess.run(
        ["readelf", "-d", "-W", str(path)], capture_output=True, text=True, check=True
    ).stdout
    needed = set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic))
    versions = subprocess.run(
        ["readelf", "-V", "-W", str(path)], capture_output=True, text=True, check=True
    ).stdout
    glibc = sorted(
        set(re.findall(r"Name: GLIBC_([0-9.]+)", versions)),
        key=lambda v: tuple(int(p) for p in v.split(".")),
    )
    return needed, (glibc[-1] if glibc else None)


def is_elf(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == b"\x7fELF"


def auto_depends(stage: Path) -> list[str]:
    packages: dict[str, str | None] = {}
    for path in sorted(p for p in stage.rglob("*") if p.is_file() and not p.is_symlink()):
        if "DEBIAN" in path.relative_to(stage).parts or not is_elf(path):
            continue
        needed, glibc = elf_needs(path)
        for lib in needed:
            if lib not in LIBRARY_PACKAGES:
                raise PackagingError(
                    f"{path.relative_to(stage)} needs {lib}; add it to LIBRARY_PACKAGES in mkdeb.py"
                )
            packages.setdefault(LIBRARY_PACKAGES[lib], None)
        if glibc and "libc6" in packages:
            old = packages["libc6"]
            if old is None or tuple(map(int, glibc.split("."))) > tuple(map(int, old.split("."))):
                packages["libc6"] = glibc
    return [f"{name} (>= {v})" if v else name for name, v in sorted(packages.items())]


def source_date_epoch() -> int:
    """The last commit's time: the package is the same whenever it is built."""
    if "SOURCE_DATE_EPOCH" in os.environ:
        return int(os.environ["SOURCE_DATE_EPOCH"])
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "log", "-1", "--format=%ct"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        return int(out)
    except (OSError, subprocess.CalledProcessError, ValueError):
        return 0


def install(src: Path, dest: Path, mode: int) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    os.chmod(dest, mode)


def stage_assets(meta: dict, crate_dir: Path, bin_dir: Path, stage: Path) -> None:
    for entry in meta.get("assets", []):
        src_text, dest_text, mode_text = entry
        if src_text.startswith("target/release/"):
            src = bin_dir / src_text.removeprefix("target/release/")
        else:
            src = (crate_dir / src_text).resolve()
        if not src.is_file():
            raise PackagingError(f"asset {src_text} not found at {src}")
        dest = stage / (dest_text + src.name if dest_text.endswith("/") else dest_text)
        install(src, dest, int(mode_text, 8))


def stage_extra(extra: Path, stage: Path) -> None:
    for src in sorted(p for p in extra.rglob("*") if p.is_file()):
        install(src, stage / src.relative_to(extra), 0o644)


def stage_docs(name: str, pkg: dict, meta: dict, version: str, stage: Path) -> None:
    doc = stage / "usr/share/doc" / name
    doc.mkdir(parents=True, exist_ok=True)
    copyright_text = (
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
        f"Upstream-Name: {name}\n"
        f"Source: {pkg.get('repository') or ''}\n\n"
        "Files: *\n"
        f"Copyright: {meta.get('copyright', '')}\n"
        f"License: {pkg.get('license', '')}\n"
    )
    (doc / "copyright").write_text(copyright_text)
    os.chmod(doc / "copyright", 0o644)
    maintainer = meta["maintainer"]
    when = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(source_date_epoch()))
    changelog = (
        f"{name} ({version}) unstable; urgency=medium\n\n"
        f"  * Built from the nodewarden workspace.\n\n"
        f" -- {maintainer}  {when}\n"
    )
    # mtime=0 keeps the package byte-for-byte reproducible.
    with open(doc / "changelog.Debian.gz", "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
            gz.write(changelog.encode())
    os.chmod(doc / "changelog.Debian.gz", 0o644)


def description(pkg: dict, meta: dict) -> str:
    lines = [pkg["description"]]
    long = " ".join(meta.get("extended-description", "").split())
    words, line = long.split(), ""
    for word in words:
        if line and len(line) + 1 + len(word) > 78:
            lines.append(" " + line)
            line = word
        else:
            line = f"{line} {word}".strip()
    if line:
        lines.append(" " + line)
    return "\n".join(lines)


def installed_size_kib(stage: Path) -> int:
    total = 0
    for p in stage.rglob("*"):
        if "DEBIAN" in p.relative_to(stage).parts:
            continue
        total += (p.stat().st_size + 1023) // 1024 if p.is_file() else 1
    return total


def write_control(
    stage: Path, crate_dir: Path, name: str, version: str, arch: str, pkg: dict, meta: dict
) -> None:
    control_dir = stage / "DEBIAN"
    control_dir.mkdir(mode=0o755, exist_ok=True)
    depends = []
    for dep in (d.strip() for d in meta.get("depends", "$auto").split(",")):
        depends.extend(auto_depends(stage) if dep == "$auto" else [dep] if dep else [])
    fields = [
        ("Package", name),
        ("Version", version),
        ("Architecture", arch),
        ("Maintainer", meta["maintainer"]),
        ("Installed-Size", str(installed_size_kib(stage))),
        ("Depends", ", ".join(depends)),
        ("Recommends", meta.get("recommends", "")),
        ("Suggests", meta.get("suggests", "")),
        ("Breaks", meta.get("breaks", "")),
        ("Replaces", meta.get("replaces", "")),
        ("Section", meta.get("section", "misc")),
        ("Priority", meta.get("priority", "optional")),
        ("Homepage", pkg.get("repository") or ""),
        ("Description", description(pkg, meta)),
    ]
    text = "".join(f"{k}: {v}\n" for k, v in fields if v)
    (control_dir / "control").write_text(text)

    conffiles = meta.get("conf-files", [])
    for conf in conffiles:
        if not (stage / conf.lstrip("/")).is_file():
            raise PackagingError(f"conf-file {conf} is not among the assets")
    if conffiles:
        (control_dir / "conffiles").write_text("".join(f"{c}\n" for c in conffiles))

    sums = []
    for p in sorted(stage.rglob("*")):
        rel = p.relative_to(stage)
        if p.is_file() and rel.parts[0] != "DEBIAN" and f"/{rel}" not in conffiles:
            sums.append(f"{hashlib.md5(p.read_bytes()).hexdigest()}  {rel}\n")
    (control_dir / "md5sums").write_text("".join(sums))

    scripts = meta.get("maintainer-scripts")
    if scripts:
        for script in ("preinst", "postinst", "prerm", "postrm"):
            src = (crate_dir / scripts / script).resolve()
            if src.is_file():
                install(src, control_dir / script, 0o755)
    for p in control_dir.iterdir():
        if p.name not in ("preinst", "postinst", "prerm", "postrm"):
            os.chmod(p, 0o644)


def normalise_modes(stage: Path) -> None:
    for p in [stage, *stage.rglob("*")]:
        if p.is_dir():
            os.chmod(p, 0o755)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crate", required=True, help="crate directory, e.g. agent")
    parser.add_argument("--arch", required=True, help="Debian architecture: amd64, arm64, armhf")
    parser.add_argument("--bin-dir", required=True, type=Path, help="where the built binaries are")
    parser.add_argument("--extra-dir", type=Path, help="tree merged into the package")
    parser.add_argument("--version", help="Debian version (default: crate version + -1)")
    parser.add_argument("--out", type=Path, default=REPO / "dist")
    args = parser.parse_args()

    crate_dir = (REPO / args.crate).resolve()
    try:
        pkg, meta, _ = load_metadata(crate_dir)
        name = meta.get("name", pkg["name"])
        version = args.version or f"{pkg['version']}-{meta.get('revision', '1')}"
        with tempfile.TemporaryDirectory(prefix="mkdeb-") as tmp:
            stage = Path(tmp) / f"{name}_{version}_{args.arch}"
            stage.mkdir()
            stage_assets(meta, crate_dir, args.bin_dir.resolve(), stage)
            if args.extra_dir and args.extra_dir.is_dir():
                stage_extra(args.extra_dir, stage)
            stage_docs(name, pkg, meta, version, stage)
            normalise_modes(stage)
            write_control(stage, crate_dir, name, version, args.arch, pkg, meta)
            args.out.mkdir(parents=True, exist_ok=True)
            deb = args.out / f"{name}_{version}_{args.arch}.deb"
            subprocess.run(
                ["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(stage), str(deb)],
                check=True,
                stdout=subprocess.DEVNULL,
                env={**os.environ, "SOURCE_DATE_EPOCH": str(source_date_epoch())},
            )
    except (PackagingError, subprocess.CalledProcessError, OSError, KeyError) as e:
        print(f"mkdeb: {e}", file=sys.stderr)
        return 1
    print(deb)
    return 0


if __name__ == "__main__":
    sys.exit(main())
