"""File digests for provenance: the sha256 of a file, and the record of the files an output came from.

Neutral (no project imports): the score core hashes checkpoint weights with it, the store layer
records its sources with it. :mod:`scorerecon.modalities.io.store` re-exports both names.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["describe_sources", "sha256_file"]


def sha256_file(path: str | os.PathLike, block: int = 8 << 20) -> str:
    """Hex sha256 of a file, read in blocks (bounded memory for any size)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def describe_sources(paths: Iterable[str | os.PathLike], digests: Mapping[Path, Any] | None = None
                     ) -> list[dict[str, Any]]:
    """Provenance records (absolute path, sha256, size) for the files a store was made from.

    A path with an entry in ``digests`` (keyed by resolved path; a
    :class:`~scorerecon.modalities.io.digests.StreamedDigest` the reader's chunk reads fill)
    records that digest object as it is, for the store writer to resolve; any other file is
    hashed here, now.
    """
    digests = digests or {}
    records = []
    for path in paths:
        path = Path(path).resolve()
        digest = digests.get(path)
        records.append({"path": str(path), "sha256": digest if digest is not None else sha256_file(path),
                        "bytes": path.stat().st_size})
    return records
