"""Where scorerecon may write, what ``--overwrite`` may replace, and how an output is published.

One policy for every writer (stores, exports, reconstructions), so that no command can delete a
user's data by being pointed at the wrong folder:

:func:`check_output` (called up front, before any work, and again just before publishing)
    * the target's nearest existing ancestor must be a writable directory (missing parents are
      created when the output is published);
    * the target must not be a symbolic link, nor a directory where a file is written (or a file
      where a directory is);
    * an existing target is replaced only with ``overwrite=True``, and never when it is, or is an
      ancestor of, a *protected* path: the sources being read and the input store (every writer
      passes them; :func:`write_store` also takes them from its datasets' ``source_files`` and
      ``input_store`` attrs);
    * an existing **directory** is replaced only if scorerecon wrote it: it holds the marker
      :data:`MARKER` (written last, into the staging folder, just before the rename) and nothing
      besides the entries the marker lists (in a Zarr hierarchy the marker is the root attribute
      :data:`MARKER_ATTR`, so Zarr readers see no foreign file). Stores written before it are
      recognised by their root ``zarr.json`` carrying ``scorerecon_complete`` and holding only
      Zarr nodes. A folder with anything else in it (``thesis.tex``) is refused, whatever it is.
    * an existing **file** output (NIfTI, GeoTIFF, JSON, PNG) is a regular file the command line
      named explicitly, so ``--overwrite`` may replace it unless it is protected.

:func:`staging_path` / :func:`publish`
    Outputs are written under a hidden sibling (``.NAME.partial-PID-XXXX`` for stores,
    ``.partial-PID-XXXX-NAME`` for exports, which keeps the extension libraries pick the format
    from). :func:`publish` fsyncs every file and folder of the staged output, moves an old output
    aside, renames the new one into place, fsyncs the parent folder and only then deletes the old
    one: after a crash, the target is either the old output or the complete new one.

:func:`remove_stale_staging`
    Staging siblings left by a writer that was killed (their PID is no longer alive) are deleted by
    the next command writing the same target.

Hand-written: no library decides which paths are safe to delete; the fsync sequence follows the
POSIX rename-durability idiom (fsync the data, rename, fsync the directory).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from scorerecon import __version__
from scorerecon.errors import InputError

#: The file scorerecon writes last into every directory output; ``--overwrite`` requires it ...
MARKER = ".scorerecon-output.json"
#: ... or, in a Zarr hierarchy (store, OME-Zarr), this root attribute instead of the file.
MARKER_ATTR = "scorerecon_output"
#: Entries other programs drop into an output folder that do not make it "hold anything else".
_IGNORED = frozenset({MARKER, ".snakemake_timestamp", ".DS_Store"})

Kind = Literal["dir", "file"]


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return Path(".")


def check_parent(target: Path) -> None:
    """Refuse a target whose folder cannot be created or written (one line naming the folder)."""
    parent = _nearest_existing(target.parent)
    if not parent.is_dir():
        raise InputError(target, f"cannot write here: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(target, f"cannot write here: no write permission in {parent}")


def _is_within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def _protected_conflict(target: Path, protect: Iterable[str | os.PathLike]) -> str | None:
    """Why replacing ``target`` would destroy a protected path, or ``None``."""
    resolved = target.resolve()
    for path in protect:
        if path is None or str(path) == "":
            continue
        source = Path(path).resolve()
        if resolved == source:
            return "it is a source this command reads"
        if _is_within(source, resolved):
            return f"it contains {source}, a source this command reads"
    return None


def _zarr_attrs(target: Path) -> dict | None:
    """Root attributes of a Zarr v3 hierarchy at ``target``, or ``None`` if it is not one."""
    try:
        meta = json.loads((target / "zarr.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict):
        return None
    attrs = meta.get("attributes") or {}
    return attrs if isinstance(attrs, dict) else {}


def _legacy_store(target: Path, attrs: dict) -> bool:
    """A store written before the marker existed: ``scorerecon_complete`` at the root, only Zarr nodes inside."""
    if not attrs.get("scorerecon_complete"):
        return False
    for entry in target.iterdir():
        if entry.name in _IGNORED or entry.name == "zarr.json":
            continue
        if not (entry.is_dir() and not entry.is_symlink() and (entry / "zarr.json").is_file()):
            return False
    return True


def foreign_entries(target: Path) -> list[str] | None:
    """Entries of directory ``target`` that scorerecon did not write; ``None``: it carries no marker."""
    attrs = _zarr_attrs(target)
    try:
        if attrs is not None and MARKER_ATTR in attrs:
            listed = set(attrs[MARKER_ATTR]["entries"])
        elif attrs is not None and not (target / MARKER).exists():
            return [] if _legacy_store(target, attrs) else None
        else:
            listed = set(json.loads((target / MARKER).read_text())["entries"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return sorted(e.name for e in target.iterdir() if e.name not in _IGNORED and e.name not in listed)


def check_output(target: str | os.PathLike, kind: Kind, overwrite: bool,
                 protect: Iterable[str | os.PathLike] = ()) -> None:
    """Refuse (:class:`InputError`, one line) writing ``target`` when it is unsafe; see the module docstring."""
    target = Path(target)
    check_parent(target)
    if target.is_symlink():
        raise InputError(target, "output is a symbolic link; remove it or choose another output path")
    if not target.exists():
        return
    if kind == "file" and target.is_dir():
        raise InputError(target, "output is a directory, but this output is a file; choose a file name")
    if kind == "dir" and not target.is_dir():
        raise InputError(target, "output is an existing file, but this output is a directory; choose another path")
    if not overwrite:
        raise InputError(target, "output already exists (use --overwrite to replace it)")
    conflict = _protected_conflict(target, protect)
    if conflict:
        raise InputError(target, f"refusing to overwrite: {conflict}")
    if kind == "dir":
        foreign = foreign_entries(target)
        if foreign is None:
            raise InputError(target, f"refusing to overwrite: not an output scorerecon wrote (no {MARKER}); "
                                     "delete it yourself or choose another output path")
        if foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise InputError(target, f"refusing to overwrite: the folder also holds files scorerecon did not "
                                     f"write ({shown})")


def staging_path(target: Path, style: Literal["store", "export"] = "export") -> Path:
    """A hidden sibling to write ``target`` under, named with this process's PID (see the module docstring)."""
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    if style == "store":
        return target.with_name(f".{target.name}.partial-{tag}")
    return target.with_name(f".partial-{tag}-{target.name}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _staging_pid(name: str, target_name: str) -> int | None:
    """The PID in a staging name of ``target_name`` (either style), or ``None`` if it is not one."""
    if name.startswith(f".{target_name}.partial-"):
        tag = name[len(f".{target_name}.partial-"):]
    elif name.startswith(".partial-") and name.endswith(f"-{target_name}"):
        tag = name[len(".partial-"):-len(target_name) - 1]
    else:
        return None
    pid = tag.split("-", 1)[0]
    return int(pid) if pid.isdigit() else None  # not a name this module made: leave it alone


def remove_stale_staging(target: Path) -> list[Path]:
    """Delete staging siblings of ``target`` whose writer is dead; returns what was removed."""
    removed: list[Path] = []
    parent = target.parent
    if not parent.is_dir():
        return removed
    for entry in parent.iterdir():
        pid = _staging_pid(entry.name, target.name)
        if pid is None or pid == os.getpid() or _pid_alive(pid):
            continue
        remove_path(entry)
        removed.append(entry)
    return removed


def remove_path(path: Path) -> None:
    """Remove a file, a symbolic link or a directory tree (no error if it is gone)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def write_marker(staged_dir: Path, kind: str) -> None:
    """Record in a staged directory output that scorerecon wrote it, and which entries it holds.

    A Zarr hierarchy (store, OME-Zarr) gets the record as the root attribute :data:`MARKER_ATTR`
    (a foreign file in it would make every Zarr reader warn); any other folder gets :data:`MARKER`.
    """
    entries = sorted(e.name for e in staged_dir.iterdir() if e.name not in _IGNORED)
    record = {"written_by": f"scorerecon {__version__}", "kind": kind, "entries": entries}
    if (staged_dir / "zarr.json").is_file():
        import zarr

        zarr.open_group(staged_dir, mode="a", zarr_format=3).attrs[MARKER_ATTR] = record
        return
    with open(staged_dir / MARKER, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(record, indent=1) + "\n")


def _fsync(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """fsync every file and folder under ``path`` (a file: just it), deepest first."""
    if not path.is_dir():
        _fsync(path)
        return
    for root, _dirs, files in os.walk(path, topdown=False):
        for name in files:
            _fsync(Path(root, name))
        _fsync(Path(root), directory=True)


def publish(staged: Path, target: Path) -> None:
    """Move a complete staged output onto ``target`` durably (see the module docstring).

    The caller has checked ``target`` with :func:`check_output`; an existing target is moved to a
    staging-style name first, so a crash never leaves the target missing *and* the old output
    looking complete.
    """
    fsync_tree(staged)
    old = None
    if target.exists() or target.is_symlink():
        old = staging_path(target, "export")
        os.replace(target, old)
    try:
        os.replace(staged, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)  # put the old output back
        raise
    _fsync(target.parent if str(target.parent) else Path("."), directory=True)
    if old is not None:
        remove_path(old)
