"""The hook through which the score core reads training data in every format the ingest reads.

``models/`` (the score core) must not import the pipeline layer, yet a training config may name
a Zarr store or a DICOM series as a source. The dependency is inverted here: the pipeline layer
registers an opener (:mod:`scorerecon.pipelines` does so when it is imported, with
:func:`scorerecon.pipelines.sources.open_training_source`) and
:class:`~scorerecon.models.data.PatchDataset` calls :func:`open_source`. NIfTI and ``.npy``
sources need no opener (the core reads them with nibabel / NumPy).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scorerecon.errors import InputError

__all__ = ["OpenedSource", "open_source", "register_source_opener"]


@dataclass
class OpenedSource:
    """One opened training source: a lazy dataset group and what the core needs to know about it."""

    data: Any  # xarray.Dataset of the group (lazy, dask-backed)
    sources: list[dict[str, Any]]  # provenance of the original files (path, sha256, bytes)
    where: str  # how error messages name the group ("group '/'", "the reader's output")
    affine: Any  # the RAS affine attr (4x4 nested list) or None
    load: Callable[[str], Any]  # variable name -> numpy array, a corrupt chunk an InputError


Opener = Callable[[Path, str], OpenedSource]
_OPENER: Opener | None = None


def register_source_opener(opener: Opener) -> None:
    """Install the function that opens stores and ingestible files (the pipeline layer calls this)."""
    global _OPENER
    _OPENER = opener


def open_source(path: Path, group: str) -> OpenedSource:
    """Open ``path`` (a store, or a file the ingest reads) at ``group`` through the registered opener."""
    if _OPENER is None:
        raise InputError(path, "reading stores and DICOM needs the pipeline layer's readers: import "
                               "scorerecon.pipelines first (it registers them), or train from NIfTI / .npy")
    return _OPENER(Path(path), group)
