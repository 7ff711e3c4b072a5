"""Pack the packages the GPU image lacks into one small ``.tar.xz`` the device tool can carry.

Why: the device tool carries at most 64 MiB (working tree + carried paths). The wheels the GPU
check needs are ~23 MiB as wheels (zip-deflated, unstripped extension modules, test suites), which
with the ~53 MiB tracked tree does not fit. Installed into a ``--target`` folder for the GPU
machine's Python, without test suites and byte-code, extension modules stripped of unneeded symbols
(what Debian's packaging does to shared objects) and xz-compressed, the same packages take ~5 MiB.
``benchmarks/run_gpu_check.sh`` unpacks it into a private folder on ``PYTHONPATH``.

Hand-written because no packaging tool produces a pruned, stripped, prebuilt site folder for a
foreign Python; pip does the installing (``--target --platform --python-version``).

    python benchmarks/gpu_site_pack.py --wheels build/gpu-wheels --python-version 3.12 \\
        --out wheels/gpu-site-cp312.tar.xz
"""

from __future__ import annotations

import argparse
import lzma
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

#: folders no import of the check reaches (test suites, their data, byte-code caches)
PRUNED_DIRS = ("tests", "testing", "__pycache__")
#: the platforms ``make gpu-wheels`` downloads for (pip matches manylinux tags exactly)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def install_target(wheels: list[Path], target: Path, python_version: str) -> None:
    """pip-install ``wheels`` (no dependencies, no index) into ``target`` for ``python_version``."""
    platform_args = [arg for p in PLATFORMS for arg in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile",
                    "--only-binary=:all:", "--implementation", "cp", "--python-version", python_version,
                    *platform_args, "--target", str(target), *map(str, wheels)], check=True)


def prune(target: Path) -> None:
    """Remove test suites and byte-code; strip extension modules when ``strip`` exists."""
    for name in PRUNED_DIRS:
        for folder in sorted(target.rglob(name), key=lambda p: len(p.parts), reverse=True):
            if folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)
    strip = shutil.which("strip")
    if strip:
        for lib in target.rglob("*.so*"):
            if lib.is_file():
                subprocess.run([strip, "--strip-unneeded", str(lib)], check=True)


def write_archive(target: Path, out: Path) -> None:
    """``target``'s content as a deterministic xz tarball (sorted names, zeroed owners and times)."""
    def normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        return info

    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with tarfile.open(partial, "w:xz", preset=9 | lzma.PRESET_EXTREME) as tar:
        for path in sorted(target.rglob("*")):
            if path.is_file() or path.is_symlink():
                tar.add(path, arcname=str(path.relative_to(target)), recursive=False, filter=normalise)
    partial.replace(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheels", type=Path, required=True, help="folder of downloaded wheels")
    parser.add_argument("--python-version", default="3.12", help="the GPU machine's CPython (X.Y)")
    parser.add_argument("--out", type=Path, required=True, help="the .tar.xz to write")
    args = parser.parse_args(argv)
    wheels = sorted(args.wheels.glob("*.whl"))
    if not wheels:
        print(f"gpu_site_pack: {args.wheels}: no wheels", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "site"
        install_target(wheels, target, args.python_version)
        prune(target)
        write_archive(target, args.out)
    print(f"{args.out}: {len(wheels)} wheels, {args.out.stat().st_size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
