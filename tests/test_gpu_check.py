"""The prepared GPU check stays runnable: ``benchmarks/gpu_engine.py --dry-run`` end to end on the CPU.

The check drives the user-facing code paths (``scorerecon reconstruct`` for MRI and CT,
``pansharpen_scene``, the natural-image solver, ``scorerecon evaluate`` twice), so a change to any
of them that would break it on the GPU machine -- where nobody can debug it cheaply -- fails here
first. Toy sizes: the numbers mean nothing and are not asserted; the steps and the report are.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NEEDED = ("brain_ddpm", "head_ct_ddpm", "landsat8_pansharpen", "kodak_prior")


def _gpu_engine():
    spec = importlib.util.spec_from_file_location("gpu_engine", REPO / "benchmarks" / "gpu_engine.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_engine"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_dry_run_drives_every_step_and_reports(tmp_path: Path) -> None:
    missing = [n for n in NEEDED if not (REPO / "checkpoints" / n / "model_card.json").is_file()]
    if missing:
        pytest.skip(f"shipped checkpoints missing: {missing}")
    out = tmp_path / "gpu_check.md"
    report = _gpu_engine().main(["--dry-run", "--threads", "1", "--out", str(out)])
    text = out.read_text()
    assert text == "\n".join(report.lines) + "\n"
    for row in ("| MRI |", "| CT |", "| pan-sharpening |", "| natural (x4 SR, prox) |"):
        assert row in text
    for line in ("engine ratio mri", "engine ratio ct", "engine ratio pansharpen", "engine ratio natural",
                 "compiled NFE-tiles/s", "CT volume 32x32x4 at 2 NFE", "|dPSNR| CPU vs cpu again"):
        assert f"- {line}" in text
    results = json.loads(out.with_suffix(".json").read_text())
    assert results["dry_run"] is True and results["device"] == "cpu"
    for task in ("mri", "ct", "pansharpen", "natural"):
        assert results[task]["rate"] > 0 and results[task]["bare"] > 0
    assert results["ct"]["tiles"] == 4 and results["mri"]["tiles"] == 2  # every slice went through reconstruct
    # the same evaluation twice on the same device: the same PSNR for every method, to the last digit
    assert set(results["check"]["dpsnr"]) == {"fbp", "tv", "dds"}
    assert max(results["check"]["dpsnr"].values()) == 0.0
