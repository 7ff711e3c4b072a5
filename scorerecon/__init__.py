"""scorerecon: score-based diffusion reconstruction from raw medical and remote-sensing data.

The code lives in the repository's top-level folders and installs under this package:
``scorerecon.modalities`` (formats and physics), ``scorerecon.models`` (the score-SDE core)
and ``scorerecon.pipelines`` (ingest, reconstruct, evaluate, export, CLI).
"""

__version__ = "0.1.0"
