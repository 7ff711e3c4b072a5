"""The sha256 manifest of an export's own bytes: ``OUT.sha256`` beside every ``scorerecon export`` output.

An export's provenance record (NIfTI sidecar, GeoTIFF tags, PNG iTXt, DICOM private block, OME-Zarr
attributes) names the store and the sources it came from, but a file cannot carry its own digest.
So every export also writes, beside its output ``OUT`` (a file or a folder), ``OUT.sha256``: one
line per file it wrote, ``<sha256>  <path>`` with the path relative to the manifest's folder. That
is the format of GNU coreutils' ``sha256sum``, so ``sha256sum -c OUT.sha256`` (run in that
folder) checks it too. The manifest lists the main output (every file of a folder export, the
``.scorerecon-output.json`` marker included) and the sidecars written with it (NIfTI ``OUT.json``
and the BIDS ``<stem>.json``, the STAC item of a GeoTIFF).

``scorerecon provenance verify OUT`` (:func:`check_manifest`, from :mod:`~scorerecon.modalities.io.verify`)
hashes every listed file again. It fails with one line naming the first file that changed or is
gone, or a file in a folder export that the export did not write. An export written before
manifests existed has none: verify says so and checks the rest of the record as before.

Hand-written: hashlib does the hashing (:func:`scorerecon.hashing.sha256_file`); the file is the
``sha256sum`` text format, which needs no library.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from scorerecon.errors import InputError
from scorerecon.hashing import sha256_file

__all__ = ["SUFFIX", "check_manifest", "manifest_path", "read_manifest", "write_manifest"]

SUFFIX = ".sha256"


def manifest_path(output: str | os.PathLike) -> Path:
    """Where the manifest of ``output`` lives: ``OUT.sha256`` beside it."""
    output = Path(output)
    return output.with_name(output.name + SUFFIX)


def _files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def write_manifest(manifest: Path, written: Iterable[tuple[Path, Path]], base: Path) -> None:
    """Write ``manifest`` for ``written``: ``(staged, final)`` pairs of outputs (files or folders).

    The digests are of the staged bytes (what will be published); the paths are the final names,
    relative to ``base`` (the folder the manifest is published in).
    """
    lines = []
    for staged, final in written:
        name = Path(os.path.relpath(final, base))
        for path in _files(staged):
            rel = name / path.relative_to(staged) if staged.is_dir() else name
            lines.append(f"{sha256_file(path)}  {rel.as_posix()}\n")
    manifest.write_text("".join(lines))


def read_manifest(manifest: Path) -> list[tuple[str, str]]:
    """``(sha256, relative path)`` entries of a manifest; one-line :class:`InputError` if it is not one."""
    entries = []
    try:
        text = manifest.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(manifest, f"cannot read the export's sha256 manifest ({type(exc).__name__}: {exc})") from None
    for number, line in enumerate(text.splitlines(), 1):
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest) or not name:
            raise InputError(manifest, f"line {number} is not '<sha256>  <path>': the manifest was changed")
        entries.append((digest, name))
    if not entries:
        raise InputError(manifest, "the export's sha256 manifest lists no file: it was changed")
    return entries


def check_manifest(output: Path, shown: Callable[[Path], str] = str) -> list[str] | None:
    """Hash every file ``OUT.sha256`` lists again; report lines, or ``None`` when ``output`` has no manifest.

    Raises :class:`InputError` naming the first file whose sha256 differs, a listed file that is
    gone, or (folder exports) a file the export did not write.
    """
    manifest = manifest_path(output)
    if not manifest.is_file():
        return None
    base = manifest.parent
    entries = read_manifest(manifest)
    for expected, name in entries:
        path = base / name
        if not path.is_file():
            raise InputError(shown(path), f"listed in {manifest.name} but gone: the export is incomplete")
        actual = sha256_file(path)
        if actual != expected:
            raise InputError(shown(path), f"changed since it was exported: sha256 {actual[:16]}... but "
                                          f"{manifest.name} records {expected[:16]}... (modified or replaced)")
    if output.is_dir():
        listed = {(base / name).resolve() for _, name in entries}
        extra = [p for p in _files(output) if p.resolve() not in listed]
        if extra:
            names = ", ".join(str(p.relative_to(output)) for p in extra[:5]) + (" ..." if len(extra) > 5 else "")
            raise InputError(shown(output), f"holds {len(extra)} file(s) the export did not write ({names}); "
                                            f"{manifest.name} lists what it wrote")
    return [f"ok {len(entries)} exported file(s) hashed again, as {shown(manifest)} records (sha256)"]
