"""Steps a user runs: ingest, reconstruct, evaluate, export, and the command-line interface.

Importing the package registers the ingest readers as the score core's training-source opener
(:mod:`scorerecon.sources`): ``models/`` reads stores and DICOM through it without importing
this layer.
"""

from __future__ import annotations

from pathlib import Path

from scorerecon.sources import OpenedSource, register_source_opener


def _open_training_source(path: Path, group: str) -> OpenedSource:
    from scorerecon.pipelines.sources import open_training_source  # lazily: keeps `import` light

    return open_training_source(path, group)


register_source_opener(_open_training_source)
