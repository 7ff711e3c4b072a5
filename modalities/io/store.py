"""The chunked Zarr v3 store every step reads and writes, through xarray + dask.

Conventions (see ``docs/conventions.md`` section 2):

* A store holds one or more groups; each group is an ``xarray.Dataset`` whose main variable is
  ``image`` (real-valued pixels/voxels) or ``kspace`` (complex64 raw MRI data). Medical dims are
  ``(z, y, x)`` with coordinates in mm and a 4x4 RAS ``affine`` attr; geo dims are
  ``(band, y, x)`` with CRS/transform in ``spatial_ref`` (rioxarray); k-space is
  ``(coil, z, ky, kx)``.
* Attrs carry provenance: ``source_files`` (path, sha256, bytes), ``reader``,
  ``reader_version``, ``scorerecon_version``; and geometry.
* A store is written under a temporary sibling name (``.NAME.partial-PID-XXXX``) and renamed
  into place only after every chunk, the ``scorerecon_complete`` attr and the output marker attr
  (:mod:`~scorerecon.modalities.io.outputs`) are on disk and fsynced, so an interrupted write
  never leaves a store that looks complete. :func:`open_store` refuses stores without the attr;
  ``--overwrite`` replaces only a folder carrying the output marker.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec

from scorerecon import __version__
from scorerecon.errors import InputError
from scorerecon.hashing import describe_sources, sha256_file  # noqa: F401  (re-exported)
from scorerecon.modalities.io.digests import StreamedDigest
from scorerecon.modalities.io.outputs import (
    check_output,
    publish,
    remove_stale_staging,
    staging_path,
    write_marker,
)

COMPLETE_MARKER = "scorerecon_complete"

#: Chunk compressors ``write_store`` offers (``scorerecon ingest --compression``). LZ4 with byte
#: shuffle is the default: 1.2x (noisy CT) to 2x (MRI) smaller at ~0.6-1 GB/s per core; Zstd
#: level 1 is 1.5-1.7x smaller again at a third of the speed; "none" keeps ingest I/O-bound.
COMPRESSIONS = ("lz4", "zstd", "none")

#: What a streamed digest reads as in metadata until the data are written and it is resolved.
PENDING_DIGEST = "pending"

# Snakemake drops a timestamp file into directory outputs; zarr warns about it on every listing.
warnings.filterwarnings("ignore", message=r"Object at \.snakemake_timestamp is not recognized")

ROOT = "/"


def provenance_attrs(reader: str, reader_version: str, sources: Iterable[str | os.PathLike],
                     digests: Mapping[Path, StreamedDigest] | None = None) -> dict[str, Any]:
    """The attrs every ingested group carries, whatever its reader (``digests``: see describe_sources)."""
    return {
        "reader": reader,
        "reader_version": reader_version,
        "scorerecon_version": __version__,
        "source_files": describe_sources(sources, digests),
    }


def _jsonable(value: Any, resolve_digests: bool = True) -> Any:
    """Attrs must survive a JSON round trip in zarr v3 metadata.

    A :class:`StreamedDigest` becomes its hex digest, or :data:`PENDING_DIGEST` when
    ``resolve_digests`` is false (before the chunk reads that feed it have run).
    """
    if isinstance(value, StreamedDigest):
        return value.hexdigest() if resolve_digests else PENDING_DIGEST
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, resolve_digests) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, resolve_digests) for v in value]
    return value


def _streamed_attrs(attrs: Mapping[str, Any]) -> list[str]:
    """Names of the attrs that hold a streamed digest somewhere inside."""
    def holds(value: Any) -> bool:
        if isinstance(value, StreamedDigest):
            return True
        if isinstance(value, Mapping):
            return any(holds(v) for v in value.values())
        if isinstance(value, (list, tuple)):
            return any(holds(v) for v in value)
        return False

    return [str(k) for k, v in attrs.items() if holds(v)]


def _clean_attrs(ds: xr.Dataset) -> xr.Dataset:
    ds = ds.copy()
    ds.attrs = {k: _jsonable(v, resolve_digests=False) for k, v in ds.attrs.items()}
    for name in list(ds.variables):
        if ds[name].dtype.kind == "U":
            # fixed-width unicode has no Zarr v3 spec (zarr warns it may become unreadable);
            # variable-length strings are the specified "string" data type
            ds[name] = ds[name].astype(object)
        ds[name].attrs = {k: _jsonable(v) for k, v in ds[name].attrs.items()}
    return ds


def _compressors(compression: str) -> list[Any]:
    """The codec chain for :data:`COMPRESSIONS`; every chain ends in a CRC32C checksum per chunk,
    which turns silent bit rot into a read error."""
    if compression == "lz4":
        return [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"), Crc32cCodec()]
    if compression == "zstd":
        return [BloscCodec(cname="zstd", clevel=1, shuffle="shuffle"), Crc32cCodec()]
    if compression == "none":
        return [Crc32cCodec()]
    raise InputError(None, f"unknown compression {compression!r}; choose one of {', '.join(COMPRESSIONS)}")


def _encoding_for(ds: xr.Dataset, compression: str = "lz4") -> dict[str, dict[str, Any]]:
    """One zarr chunk per dask chunk (writes stream chunk by chunk), compressed per ``compression``;
    coordinates are checksummed too.

    LZ4 rather than zarr's default Zstd because ingest must keep pace with a raw read of the
    source (benchmarks/ingest.py); shuffle recovers most of Zstd's ratio on medical integers.
    """
    encoding: dict[str, dict[str, Any]] = {}
    for name, var in ds.data_vars.items():
        entry: dict[str, Any] = {"compressors": _compressors(compression)}
        if var.chunks is not None:
            entry["chunks"] = tuple(c[0] for c in var.chunks)
        encoding[str(name)] = entry
    for name in ds.coords:
        # coordinates (mm positions, band names, ...) get the same per-chunk CRC32C: a flipped byte in
        # one would otherwise move the data in space silently
        encoding[str(name)] = {"compressors": _compressors(compression)}
    return encoding


def _block_order(key: Any) -> tuple[str, tuple[int, ...]]:
    """A dask key as (array name, block index): chunks of one array sort in file order."""
    if isinstance(key, tuple) and key:
        return str(key[0]), tuple(int(i) for i in key[1:] if isinstance(i, int))
    return str(key), ()


class _ChunksInFileOrder:
    """Make dask's local scheduler start chunk tasks in block-index order.

    dask orders independent chunk tasks by a graph heuristic that scrambles them; reading the
    source front to back instead keeps I/O sequential and lets streamed digests advance without
    buffering. Uses the documented scheduler callback ``start_state``; a distributed scheduler
    ignores it (digests then fall back to re-reading, still correct).
    """

    def __enter__(self) -> _ChunksInFileOrder:
        from dask.callbacks import Callback

        def start_state(dsk: Any, state: dict[str, Any]) -> None:
            state["ready"].sort(key=_block_order, reverse=True)  # the scheduler pops from the end

        self._callback = Callback(start_state=start_state)
        self._callback.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._callback.__exit__(*exc)


def _compute_joined(delayed: Any) -> None:
    """Compute ``delayed``; if a chunk fails, return (raise) only after every other chunk task ended.

    dask's threaded scheduler raises the first error while its other worker threads may still be
    writing chunks; removing the staging folder then races them, and a late chunk recreates the
    folder (a ``.NAME.partial-*`` left behind after a corrupt source tile). With the threaded
    scheduler (the default) the chunks run on a pool owned here, which is shut down, waiting for
    running tasks and cancelling queued ones, before the error propagates. Other schedulers
    (synchronous, a distributed client) are used unchanged.
    """
    from concurrent.futures import ThreadPoolExecutor

    import dask
    from dask.base import get_scheduler
    from dask.threaded import get as threaded_get

    if get_scheduler(collections=[delayed]) is not threaded_get:
        delayed.compute()
        return
    workers = dask.config.get("num_workers", None) or os.cpu_count() or 1
    pool = ThreadPoolExecutor(max_workers=int(workers), thread_name_prefix="scorerecon-store")
    try:
        delayed.compute(scheduler="threads", pool=pool)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _protected_sources(groups: Mapping[str, xr.Dataset]) -> list[str]:
    """Paths a store's groups were made from (``source_files``, ``input_store``): never overwritten."""
    paths: list[str] = []
    for ds in groups.values():
        for record in ds.attrs.get("source_files") or []:
            if isinstance(record, Mapping) and record.get("path"):
                paths.append(str(record["path"]))
        if isinstance(ds.attrs.get("input_store"), str):
            paths.append(ds.attrs["input_store"])
    return paths


def write_store(groups: Mapping[str, xr.Dataset] | xr.Dataset, path: str | os.PathLike,
                overwrite: bool = False, progress: bool = False, compression: str = "lz4",
                protect: Iterable[str | os.PathLike] = ()) -> Path:
    """Write groups (``{"/": ds}`` or a bare Dataset) to a Zarr v3 store, atomically.

    Chunks are computed by dask straight into the temporary store, so memory stays bounded by a
    few chunks whatever the volume size. Every chunk is written, even one that is all fill
    value, so that :func:`open_store` can tell a chunk lost after writing from an empty one
    (Zarr would otherwise read a missing chunk back as fill value, silently). Source digests the
    readers stream (:class:`StreamedDigest`) are recorded after the chunks, before the marker.

    ``overwrite`` replaces only a store scorerecon wrote, never ``protect`` (the sources being
    read) nor the groups' recorded sources, nor a folder holding anything else
    (:func:`~scorerecon.modalities.io.outputs.check_output`); the new store is fsynced before it
    is renamed into place (:func:`~scorerecon.modalities.io.outputs.publish`).
    """
    target = Path(path)
    if isinstance(groups, xr.Dataset):
        groups = {ROOT: groups}
    protect = [*protect, *_protected_sources(groups)]
    check_output(target, "dir", overwrite, protect)
    remove_stale_staging(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_path(target, "store")
    try:
        for index, (group, ds) in enumerate(groups.items()):
            streamed = {name: ds.attrs[name] for name in _streamed_attrs(ds.attrs)}
            ds = _clean_attrs(ds)
            group_name = None if group in ("", ROOT) else group.strip("/")
            delayed = ds.to_zarr(staging, group=group_name, mode="w" if index == 0 else "a",
                                 zarr_format=3, consolidated=False, encoding=_encoding_for(ds, compression),
                                 write_empty_chunks=True, compute=False)
            with _ChunksInFileOrder():
                if progress:
                    from dask.diagnostics import ProgressBar

                    with ProgressBar(minimum=2):
                        _compute_joined(delayed)
                else:
                    _compute_joined(delayed)
            if streamed:
                node = zarr.open_group(staging, path=group_name or "", mode="a", zarr_format=3)
                node.attrs.update({name: _jsonable(value) for name, value in streamed.items()})
        root = zarr.open_group(staging, mode="a", zarr_format=3)
        root.attrs[COMPLETE_MARKER] = True
        root.attrs["groups"] = [g if g not in ("", ROOT) else ROOT for g in groups]
        write_marker(staging, "store")
        check_output(target, "dir", overwrite, protect)  # the target may have appeared meanwhile
        publish(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def store_groups(path: str | os.PathLike) -> list[str]:
    """The groups a complete store holds (``"/"`` for the root)."""
    root = _open_root(path)
    return list(root.attrs.get("groups", [ROOT]))


def _open_root(path: str | os.PathLike) -> zarr.Group:
    path = Path(path)
    if not path.exists():
        raise InputError(path, "store does not exist")
    try:
        root = zarr.open_group(path, mode="r")
    except Exception as exc:  # zarr raises several types for a broken store
        raise InputError(path, f"not a readable Zarr store ({type(exc).__name__}: {exc})") from None
    if not root.attrs.get(COMPLETE_MARKER, False):
        raise InputError(path, "store is incomplete (its write was interrupted); delete it and rerun")
    return root


def _check_chunks_present(path: str | os.PathLike, group_name: str | None) -> None:
    """Refuse a group any of whose arrays lost chunk files after the store was written.

    :func:`write_store` writes every chunk, so fewer chunks on disk than the array's grid means
    damage (a deleted or never-copied chunk), which Zarr would read back as fill value.
    """
    try:
        node = zarr.open_group(path, path=group_name or "", mode="r", zarr_format=3)
    except Exception:
        return  # a missing group is reported by xarray below, with the group's name
    for name, array in node.arrays():
        try:
            present, expected = array.nchunks_initialized, array.nchunks
        except Exception as exc:
            raise InputError(path, f"cannot list chunks of {name!r} ({type(exc).__name__}: {exc})") from None
        if present < expected:
            where = f"{group_name}/{name}" if group_name else name
            raise InputError(path, f"missing chunk files in variable {where!r} ({present} of {expected} on "
                                   "disk): the store was damaged after writing; re-create it")


def open_store(path: str | os.PathLike, group: str = ROOT) -> xr.Dataset:
    """Open one group of a complete store lazily (dask-backed), geometry decoded.

    Refuses (:class:`InputError`) an incomplete store and a group with missing chunk files.
    """
    from contextlib import suppress

    # registers the .rio accessor geo stores are used with (slow to import); medical stores need none, so a
    # stripped install without the geo stack (the GPU check's, docs/gpu_check.md) still opens them
    with suppress(ImportError):
        import rioxarray  # noqa: F401

    _open_root(path)
    group_name = None if group in ("", ROOT) else group.strip("/")
    _check_chunks_present(path, group_name)
    try:
        return xr.open_zarr(path, group=group_name, zarr_format=3, consolidated=False,
                            decode_coords="all", mask_and_scale=False)
    except Exception as exc:
        raise InputError(path, f"cannot open group {group!r} ({type(exc).__name__}: {exc})") from None


def load_checked(ds: xr.Dataset, path: str | os.PathLike, name: str = "image", finite: bool = False) -> np.ndarray:
    """Compute one variable, turning a corrupt chunk into a one-line :class:`InputError`.

    ``finite=True`` (what reconstruct and evaluate ask for) also refuses NaN/Inf values, naming
    how many: a solver fed one NaN voxel spreads it over the whole output (a CT slice with a few
    NaN voxels came back two-thirds NaN), which must not pass as a result.
    """
    try:
        values = np.asarray(ds[name].values)
    except Exception as exc:
        raise InputError(path, f"corrupt chunk in variable {name!r} ({type(exc).__name__}: {exc})") from None
    if finite and values.dtype.kind in "fc":
        bad = int(values.size - np.count_nonzero(np.isfinite(values)))
        if bad:
            raise InputError(path, f"{bad} non-finite (NaN/Inf) value(s) of {values.size} in variable {name!r}: "
                                   "a reconstruction from them would be NaN; fix the source and ingest it again, or "
                                   "pass --nonfinite mask to fill them and mark them in the output (docs/io.md)")
    return values


def attrs_json(ds: xr.Dataset, key: str) -> Any:
    """Read an attr that may have been stored as a JSON string by older writers."""
    value = ds.attrs.get(key)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value
