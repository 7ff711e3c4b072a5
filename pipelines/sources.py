"""Training sources read by the ingest readers: the opener :mod:`scorerecon.sources` hands the score core.

A Zarr store (``zarr.json`` at its root, or a ``.zarr`` folder) is opened with
:func:`~scorerecon.modalities.io.store.open_store` (its ``source_files`` are the provenance);
any other file goes through the ingest readers (DICOM, ...) lazily, without writing a store
first, and is hashed as it is. Registered by :mod:`scorerecon.pipelines` on import.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scorerecon.sources import OpenedSource

__all__ = ["open_training_source"]


def _is_store(path: Path) -> bool:
    return path.is_dir() and ((path / "zarr.json").is_file() or path.suffix == ".zarr")


def open_training_source(path: Path, group: str) -> OpenedSource:
    """``path`` at ``group`` (a store) or the reader's group ``group`` (else its first) as an :class:`OpenedSource`."""
    from scorerecon.modalities.io.store import attrs_json, describe_sources, load_checked, open_store

    if _is_store(path):
        ds = open_store(path, group)
        return OpenedSource(ds, attrs_json(ds, "source_files") or [], f"group {group!r}", attrs_json(ds, "affine"),
                            lambda name: load_checked(ds, path, name))
    from scorerecon.pipelines.ingest import read_sources

    groups = read_sources([path])
    ds = groups[group] if group in groups else next(iter(groups.values()))
    return OpenedSource(ds, describe_sources([path]), "the reader's output", attrs_json(ds, "affine"),
                        lambda name: np.asarray(ds[name].values))
