"""Training-time augmentation (``data.augment``, ``data.slice_axes``): shapes, reproducibility,
value-preserving flips/rotations, zoom and anisotropy-corrected scale, and what the card records."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from scorerecon.models.augment import Augmentation
from scorerecon.models.data import PatchDataset
from scorerecon.models.training import Trainer
from scorerecon.pipelines.errors import InputError

TINY_NET = {"kind": "unet", "preset": "tiny", "channels": [8, 16], "attention_levels": [False, False],
            "norm_num_groups": 8, "num_head_channels": 8}
FULL = {"zoom": {"range": [0.75, 1.33]}, "flip": True, "rot90": True,
        "intensity": {"gamma": [0.7, 1.5], "contrast": [0.9, 1.1], "brightness": [-0.05, 0.05]},
        "noise": {"std": [0.0, 0.02], "prob": 0.5}}


def _nifti(path: Path, data_zyx: np.ndarray, spacing_xyz: tuple[float, float, float]) -> Path:
    """Write ``(z, y, x)`` data as a RAS NIfTI with the given voxel size."""
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data_zyx.transpose(2, 1, 0)).astype(np.float32),
                             np.diag([*spacing_xyz, 1.0])), str(path))
    return path


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    data = rng.random((40, 48, 48)).astype(np.float32) * 100
    return _nifti(tmp_path / "vol.nii.gz", data, (0.8, 0.8, 2.0))


def _data(source: Path, **extra) -> dict:
    return {"sources": [str(source)], "patch_size": [16, 16], "slice_axis": "z", "holdout": {"z": [10, 14]},
            "normalization": {"method": "fixed", "values": [0.0, 100.0], "range": [-1.0, 1.0]}, **extra}


def test_augmented_batches_have_patch_shape_and_repeat_under_a_seed(volume: Path) -> None:
    dataset = PatchDataset(_data(volume, augment=FULL, slice_axes=["z", "y", "x"]))
    a = dataset.sample_batch(24, np.random.default_rng(7))
    b = dataset.sample_batch(24, np.random.default_rng(7))
    c = dataset.sample_batch(24, np.random.default_rng(8))
    assert a.shape == (24, 1, 16, 16) and a.dtype == b.dtype
    assert np.array_equal(a.numpy(), b.numpy()) and not np.array_equal(a.numpy(), c.numpy())
    assert a.min() >= -1 and a.max() <= 1
    assert dataset.source_axes == [["z", "y", "x"]]


def test_no_augment_section_keeps_the_unaugmented_draws(volume: Path) -> None:
    """Without ``augment``/``slice_axes`` the random stream and patches are those of plain training."""
    plain = PatchDataset(_data(volume)).sample_batch(8, np.random.default_rng(3))
    empty = PatchDataset(_data(volume, augment={}, slice_axes=["z"])).sample_batch(8, np.random.default_rng(3))
    assert np.array_equal(plain.numpy(), empty.numpy())


def test_flips_and_rotations_only_move_values() -> None:
    augment = Augmentation({"flip": True, "rot90": True})
    patch = np.random.default_rng(0).standard_normal((1, 12, 12)).astype(np.float32)
    rng = np.random.default_rng(5)
    outs = [augment.apply(patch, rng, (-1.0, 1.0), clip=False) for _ in range(16)]
    for out in outs:
        assert out.shape == patch.shape and np.array_equal(np.sort(out.ravel()), np.sort(patch.ravel()))
    assert len({out.tobytes() for out in outs}) > 4  # several of the 8 orientations occur


def test_rot90_of_a_non_square_patch_keeps_its_shape() -> None:
    augment = Augmentation({"rot90": True})
    patch = np.arange(24, dtype=np.float32).reshape(1, 4, 6)
    rng = np.random.default_rng(0)
    assert all(augment.apply(patch, rng, (0.0, 24.0), clip=False).shape == (1, 4, 6) for _ in range(8))


def test_intensity_transform_is_monotone_and_stays_in_range() -> None:
    augment = Augmentation({"intensity": {"gamma": [0.5, 2.0], "prob": 1.0}})
    patch = np.linspace(-1, 1, 64, dtype=np.float32).reshape(1, 8, 8)
    out = augment.apply(patch, np.random.default_rng(2), (-1.0, 1.0), clip=True)
    assert not np.allclose(out, patch) and np.all(np.diff(out.ravel()) >= 0)
    assert out.min() == -1.0 and out.max() == 1.0  # gamma keeps the ends of [0, 1]


def _ramp_dataset(tmp_path: Path, zoom: float | None, spacing=(1.0, 1.0, 1.0), along="x",
                  slice_axes=None) -> PatchDataset:
    """A volume whose value is the position in mm along ``along``: a patch's step is its pixel size."""
    z, y, x = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in (64, 64, 64)), indexing="ij")
    mm = {"x": x * spacing[0], "y": y * spacing[1], "z": z * spacing[2]}[along]
    path = _nifti(tmp_path / f"ramp_{along}.nii.gz", mm, spacing)
    augment = {"zoom": {"range": [zoom, zoom], "prob": 1.0}} if zoom else {}
    return PatchDataset({"sources": [str(path)], "patch_size": [16, 16], "slice_axis": "z", "augment": augment,
                         "slice_axes": slice_axes, "normalization": {"method": "fixed", "values": [0.0, 1.0],
                                                                     "range": [0.0, 1.0], "clip": False}})


@pytest.mark.parametrize("zoom", [0.5, 1.0, 2.0])
def test_zoom_changes_the_pixel_size(tmp_path: Path, zoom: float) -> None:
    dataset = _ramp_dataset(tmp_path, zoom if zoom != 1.0 else None)
    batch = dataset.sample_batch(8, np.random.default_rng(0)).numpy()[:, 0]
    step = np.median(np.diff(batch[:, 4:12, 4:12], axis=-1))  # interior: away from the antialias border
    assert step == pytest.approx(1.0 / zoom, rel=0.02)


def test_slices_along_other_axes_are_resampled_to_the_in_plane_spacing(tmp_path: Path) -> None:
    """z voxels of 2 mm with 1 mm in-plane: a coronal (y) slice still has 1 mm pixels along z."""
    dataset = _ramp_dataset(tmp_path, None, spacing=(1.0, 1.0, 2.0), along="z", slice_axes=["z", "y"])
    assert dataset.source_axes == [["z", "y"]]
    assert dataset._axis_extents(0, "y", 1.0) == {"y": 1, "z": 8, "x": 16}
    rng = np.random.default_rng(0)
    coronal = [p for p in (dataset.sample_patch(rng)[0] for _ in range(40)) if np.ptp(p[:, 0]) > 0]
    assert coronal, "no slice along y was drawn"
    steps = [np.median(np.diff(p[4:12, 4:12], axis=0)) for p in coronal]
    assert np.allclose(steps, 1.0, rtol=0.02)  # 1 mm per pixel along the patch's z axis


def test_card_records_augmentation_and_pixel_spacing(tmp_path: Path, volume: Path) -> None:
    config = {"name": "aug", "seed": 0, "data": _data(volume, augment=FULL, slice_axes=["z", "y", "x"]),
              "sde": {"name": "vp"}, "parametrization": "eps", "network": TINY_NET,
              "optimizer": {"lr": 1e-3, "warmup_steps": 1}, "ema": {"decay": 0.9},
              "training": {"steps": 2, "batch_size": 2, "checkpoint_every": 0}}
    card = Trainer(config, tmp_path / "out").run()
    data = card["data"]
    assert data["pixel_spacing_mm"] == [0.8, 0.8]
    assert data["source_pixel_spacing_mm"] == [{"x": 0.8, "y": 0.8, "z": 2.0}]
    assert data["augment"]["zoom"] == {"range": [0.75, 1.33], "prob": 1.0, "spacing": "source"}
    assert data["augment"]["flip"] and data["augment"]["rot90"] and data["slice_axes"] == ["z", "y", "x"]
    assert card["training"]["complete"] and card["training"]["steps"] == 2


@pytest.mark.parametrize("augment, needle", [
    ({"zoom": {"range": [0.0, 1.2]}}, "zoom.range"),
    ({"zoom": {"ragne": [0.8, 1.2]}}, "ragne"),
    ({"intensity": {"gamma": [1.5, 0.7]}}, "intensity.gamma"),
    ({"noise": {"std": [0.0, 0.1], "prob": 2}}, "noise.prob"),
    ({"shear": True}, "shear"),
])
def test_bad_augment_sections_are_one_line_errors(augment: dict, needle: str) -> None:
    with pytest.raises(InputError, match=needle.replace(".", r"\.")):
        Augmentation(augment)


def test_3d_patches_are_augmented_too(volume: Path) -> None:
    dataset = PatchDataset(_data(volume, patch_size=[6, 12, 12], augment=FULL))
    batch = dataset.sample_batch(6, np.random.default_rng(0))
    assert batch.shape == (6, 1, 6, 12, 12) and dataset.slice_axes == [None]
    assert dataset.pixel_spacing_mm() == [2.0, 0.8, 0.8]


def test_an_augmented_run_resumes_exactly(tmp_path: Path, volume: Path) -> None:
    """Every augmentation draw comes from the checkpointed Generator: resumed == uninterrupted."""
    config = {"name": "aug", "seed": 1, "data": _data(volume, augment=FULL, slice_axes=["z", "y", "x"]),
              "sde": {"name": "vp"}, "parametrization": "eps", "network": TINY_NET,
              "optimizer": {"lr": 1e-3, "warmup_steps": 1}, "ema": {"decay": 0.9},
              "training": {"steps": 6, "batch_size": 3, "checkpoint_every": 0}}
    straight = Trainer(config, tmp_path / "straight")
    straight.run()
    Trainer(config, tmp_path / "resumed").run(until=3)
    resumed = Trainer(config, tmp_path / "resumed", resume=True)
    assert resumed.step == 3
    resumed.run()
    assert [r[1] for r in resumed.log] == [r[1] for r in straight.log]
