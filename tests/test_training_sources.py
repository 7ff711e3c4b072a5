"""Training data from several MR sources: packaged example files (``pkg:``), 4-D series, ``.npy``
slices and DICOM through the ingest readers, per-source weights / hold-outs / normalisation, and
warm-starting a prior from another checkpoint (``init_from``)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from scorerecon.models.data import PatchDataset, resolve_source_path
from scorerecon.models.training import Trainer
from scorerecon.pipelines.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
BRAIN = ROOT / "data" / "demo" / "colin27_t1.nii.gz"
EPI = "pkg:nibabel/tests/data/example4d.nii.gz"  # 128 x 96 x 24 x 2 EPI brain series
MR_DICOM = "pkg:pydicom/data/test_files/MR_small.dcm"  # 64 x 64 single-frame MR
TINY_NET = {"kind": "unet", "preset": "tiny", "channels": [8, 16], "attention_levels": [False, False],
            "norm_num_groups": 8, "num_head_channels": 8}


def _data(sources: list, **extra) -> dict:
    return {"sources": sources, "patch_size": [16, 16], "slice_axis": "z", "holdout": {"z": [80, 100]}, **extra}


@pytest.fixture(scope="module")
def coronal_npy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 2-D slice saved as .npy (Colin27's middle coronal slice)."""
    path = tmp_path_factory.mktemp("npy") / "coronal.npy"
    volume = np.asanyarray(nib.as_closest_canonical(nib.load(BRAIN)).dataobj)
    np.save(path, volume[:, volume.shape[1] // 2, :].astype(np.float32))
    return path


def test_pkg_paths_resolve_inside_installed_packages() -> None:
    path = resolve_source_path(EPI, Path("/nowhere"))
    assert path.is_file() and path.name == "example4d.nii.gz"
    with pytest.raises(InputError, match="package 'no_such_package_xyz' is not installed"):
        resolve_source_path("pkg:no_such_package_xyz/file.nii", Path("."))


def test_mixed_sources_fold_frames_and_normalise_each_source(coronal_npy: Path) -> None:
    sources = [{"path": str(BRAIN), "weight": 0.5}, {"path": EPI, "weight": 0.2, "holdout": {}},
               {"path": str(coronal_npy), "weight": 0.2, "holdout": {}},
               {"path": MR_DICOM, "weight": 0.1, "holdout": {}}]
    norm = {"method": "percentile", "percentiles": [0.5, 99.5], "per_source": True}
    data = PatchDataset(_data(sources, normalization=norm))
    brain, epi, npy, dicom = data.volumes
    # the 4-D series gives the slices of both frames, each slice the frame's axial slice
    raw = np.asanyarray(nib.as_closest_canonical(nib.load(resolve_source_path(EPI, ROOT))).dataobj)
    assert epi.shape == {"z": 48, "y": 96, "x": 128}
    np.testing.assert_array_equal(epi.data[24 + 5], raw[:, :, 5, 1].T)
    assert npy.shape == {"z": 1, "y": 181, "x": 181} and dicom.shape == {"z": 1, "y": 64, "x": 64}
    # hold-outs: Colin27 keeps its evaluation slices out, the others hold nothing out
    assert not np.isin(np.arange(80, 100), data._starts[0]["z"]).any()
    assert len(data._starts[1]["z"]) == 48
    # each source on its own intensity scale, the first one the card's reference
    values = data.normalization["source_values"]
    assert len(values) == 4 and data.normalization["values"] == values[0]
    np.testing.assert_allclose(values[1], np.percentile(epi.data, [0.5, 99.5]))
    np.testing.assert_allclose(values[2], np.percentile(npy.data, [0.5, 99.5]))
    assert values[1] != values[0]  # EPI scanner units are not Colin27's 0..255
    rng = np.random.default_rng(0)
    draws = np.bincount([data._draw(rng)[1] for _ in range(4000)], minlength=4) / 4000
    np.testing.assert_allclose(draws, [0.5, 0.2, 0.2, 0.1], atol=0.03)
    batch = data.sample_batch(64, rng)
    assert batch.shape == (64, 1, 16, 16) and batch.min() >= -1 and batch.max() <= 1
    card = data.describe()
    assert card["source_weights"] == [0.5, 0.2, 0.2, 0.1] and card["source_holdout"][1] == {}
    assert len({s["sha256"] for s in card["source_files"]}) == 4


def test_source_options_are_checked() -> None:
    with pytest.raises(InputError, match="weight for every source or for none"):
        PatchDataset(_data([{"path": str(BRAIN), "weight": 1.0}, {"path": EPI}]))
    with pytest.raises(InputError, match="needs a 'path'"):
        PatchDataset(_data([{"weight": 1.0}]))
    with pytest.raises(InputError, match="expected a 3-D NIfTI"):  # frames fold only into 2-D slices
        PatchDataset({**_data([EPI]), "patch_size": [8, 8, 8]})


def _config(sources: list, steps: int, **extra) -> dict:
    return {"name": "tiny", "seed": 1, "data": _data(sources), "sde": {"name": "vp"}, "parametrization": "eps",
            "network": TINY_NET, "optimizer": {"lr": 1e-3, "warmup_steps": 1}, "ema": {"decay": 0.9},
            "training": {"steps": steps, "batch_size": 2, "checkpoint_every": 0}, **extra}


def test_init_from_starts_at_another_priors_weights(tmp_path: Path) -> None:
    Trainer(_config([str(BRAIN)], 3), tmp_path / "base").run()
    base_card = json.loads((tmp_path / "base" / "model_card.json").read_text())
    tuned = Trainer(_config([str(BRAIN), {"path": EPI, "holdout": {}}], 2, init_from=str(tmp_path / "base")),
                    tmp_path / "tuned")
    from scorerecon.models.checkpoint import load_score_model

    base = load_score_model(tmp_path / "base").network.state_dict()
    for key, value in tuned.model.network.state_dict().items():
        assert torch.equal(value, base[key]), key
    tuned.run(until=1)
    resumed = Trainer(_config([str(BRAIN), {"path": EPI, "holdout": {}}], 2, init_from=str(tmp_path / "base")),
                      tmp_path / "tuned", resume=True)
    resumed.run()
    card = json.loads((tmp_path / "tuned" / "model_card.json").read_text())
    assert card["training"]["init_from"]["weights_sha256"] == base_card["weights"]["sha256"]
    assert card["training"]["init_from"]["steps"] == 3 and card["training"]["steps"] == 2
    wider = {**TINY_NET, "channels": [8, 24]}
    with pytest.raises(InputError, match="differs from this config in \\['network'\\]"):
        Trainer({**_config([str(BRAIN)], 1, init_from=str(tmp_path / "base")), "network": wider}, tmp_path / "x")
