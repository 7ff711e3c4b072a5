"""MRI and CT run through the tile engine: planned batches of slices x posterior samples (issue 16).

``pipelines.tasks.reconstruct`` cuts a problem's (sample, slice) elements into batches the
engine plans (``EngineConfig.batch_size`` here, to force every cut); each element keeps its own
noise stream and its sub-problem is built with the whole problem's decisions, so the images and
posterior std do not depend on the batch size, on padding the last batch to a fixed (compiled)
shape, or on how many samples ride together. Real data: the demo Colin27 T1 and head CT with the
shipped priors, CPU, a few NFE.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from real_data import CT_PRIOR, DEMO, MR_PRIOR, REPO, need

from scorerecon.pipelines.cli import main
from scorerecon.pipelines.engine import EngineConfig


def _mri_problem(intensity: str = "auto"):
    import nibabel as nib

    from scorerecon.models.checkpoint import load_score_model
    from scorerecon.pipelines.evaluate import prepare_slices
    from scorerecon.pipelines.tasks.mri import mri_problem, phase_encode_mask, simulate_singlecoil

    volume = np.asarray(nib.load(DEMO / "colin27_t1.nii.gz").dataobj[:, :, 80:83], dtype=np.float32).transpose(2, 1, 0)
    images = torch.from_numpy(prepare_slices(volume, 48, 1, square=True))
    mask = phase_encode_mask("random", tuple(images.shape[-2:]), 4.0, seed=0, axis=-2)
    model = load_score_model(MR_PRIOR)
    kspace = simulate_singlecoil(images, mask)
    problem = mri_problem(kspace, mask, model.card["data"]["normalization"], intensity=intensity)
    problem.slice_ids = [80, 81, 82]
    return problem, model, kspace, mask


def _ct_problem():
    import nibabel as nib

    from scorerecon.models.checkpoint import load_score_model
    from scorerecon.pipelines.evaluate import prepare_slices
    from scorerecon.pipelines.tasks.ct import ct_geometry, ct_problem, simulate_sinogram

    volume = np.asarray(nib.load(DEMO / "head_ct_hu.nii.gz").dataobj[:, :, 50:53], dtype=np.float32).transpose(2, 1, 0)
    hu = torch.from_numpy(prepare_slices(volume, None, 8, square=True))
    geometry = ct_geometry(hu.shape[-1], 12)
    model = load_score_model(CT_PRIOR)
    problem = ct_problem(simulate_sinogram(hu, geometry, 0.957 * 8), geometry, 0.957 * 8,
                         model.card["data"]["normalization"])
    problem.slice_ids = [50, 51, 52]
    return problem, model


def _run(problem, model, solver: str, engine: EngineConfig, samples: int = 2):
    from scorerecon.pipelines.tasks import reconstruct

    with torch.no_grad():
        return reconstruct(problem, model, solver, nfe=3, seed=5, n_samples=samples, device="cpu", engine=engine)


def test_mri_select_keeps_the_whole_batch_decisions() -> None:
    """A subset (with repeats) is the same problem on those slices: same measurement, same intensity scale."""
    need(MR_PRIOR, DEMO / "colin27_t1.nii.gz")
    from scorerecon.pipelines.tasks.mri import mri_problem

    problem, model, kspace, mask = _mri_problem("auto")
    sub = problem.select([2, 0, 0])
    torch.testing.assert_close(sub.y, problem.y[[2, 0, 0]], rtol=0, atol=1e-6 * float(problem.y.abs().max()))
    assert sub.shape == (3, *problem.shape[1:])
    # slice 2 alone with its own per-input scale is another problem: select did not re-resolve it
    alone = mri_problem(kspace[[2]], mask, model.card["data"]["normalization"], intensity="auto")
    assert alone.info["normalization"] != problem.info["normalization"]
    assert not torch.allclose(alone.y, problem.y[[2]])


@pytest.mark.parametrize("solver", ["dds", "dc"])
def test_mri_images_do_not_depend_on_the_batch_plan(solver: str) -> None:
    need(MR_PRIOR, DEMO / "colin27_t1.nii.gz")
    problem, model, _, _ = _mri_problem()
    whole = _run(problem, model, solver, EngineConfig(batch_size=6))  # 3 slices x 2 samples in one call
    assert whole.execution["sampler_calls"] == 1 and whole.execution["batch_size"] == 6
    scale = float(whole.image.abs().max())
    for config in (EngineConfig(batch_size=1), EngineConfig(batch_size=4),
                   EngineConfig(batch_size=4, fixed_shape=True)):  # the compiled-shape padding of the last call
        cut = _run(problem, model, solver, config)
        assert cut.execution["sampler_calls"] == -(-6 // config.batch_size)
        torch.testing.assert_close(cut.image, whole.image, rtol=0, atol=1e-4 * scale)
        torch.testing.assert_close(cut.std, whole.std, rtol=0, atol=1e-4 * scale)
        assert cut.seeds == whole.seeds
    assert float((whole.image[0] - whole.image[1]).abs().mean()) > 1e-3 * scale  # distinct slices
    assert float(whole.std.mean()) > 0  # two distinct posterior samples


def test_ct_images_do_not_depend_on_the_batch_plan() -> None:
    need(CT_PRIOR, DEMO / "head_ct_hu.nii.gz")
    problem, model = _ct_problem()
    sub = problem.select([1, 1])
    torch.testing.assert_close(sub.y, problem.y[[1, 1]])
    whole = _run(problem, model, "dds", EngineConfig(batch_size=6))
    cut = _run(problem, model, "dds", EngineConfig(batch_size=2))
    assert cut.execution["sampler_calls"] == 3
    torch.testing.assert_close(cut.image, whole.image, rtol=0, atol=0.5)  # HU; float32 rounding of batched kernels
    torch.testing.assert_close(cut.std, whole.std, rtol=0, atol=0.5)
    assert cut.execution["engine"] == "TileEngine" and cut.execution["precision"] == "fp32"


def test_coupled_solvers_run_whole_batches() -> None:
    """TV along z couples the slices through its data step: never cut, and the record says why."""
    need(CT_PRIOR, DEMO / "head_ct_hu.nii.gz")
    from scorerecon.pipelines.tasks.volume import reconstruct_volume

    problem, model = _ct_problem()
    with torch.no_grad():
        rec = reconstruct_volume(problem, model, "dds", nfe=2, seed=5, tv_z=1e-2, n_samples=2, device="cpu",
                                 engine=EngineConfig(batch_size=1))
    assert rec.execution["batch_size"] == 3 and rec.execution["sampler_calls"] == 2
    assert rec.execution["batching"].startswith("whole batch")


def test_reconstruct_cli_engine_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--batch-size`` changes the cut, not the image; the record names the engine; bf16 on a CPU is one line."""
    need(CT_PRIOR, DEMO / "head_ct_hu.nii.gz")
    from scorerecon.modalities.io.store import open_store
    from scorerecon.pipelines.ingest import ingest

    store = ingest([DEMO / "head_ct_hu.nii.gz"], tmp_path / "ct.zarr")
    args = ["reconstruct", "--task", "ct", "--input", str(store), "--slices", "53,54", "--views", "23",
            "--downsample", "4", "--nfe", "2", "--samples", "2", "--threads", "1", "--quiet", "--device", "cpu"]
    assert main([*args, "-o", str(tmp_path / "one.zarr"), "--batch-size", "1"]) == 0
    assert main([*args, "-o", str(tmp_path / "all.zarr"), "--precision", "fp32"]) == 0
    one, every = open_store(tmp_path / "one.zarr"), open_store(tmp_path / "all.zarr")
    np.testing.assert_allclose(one["image"].values, every["image"].values, rtol=0, atol=0.5)
    run = one.attrs["reconstruction"]["execution"]
    assert run["engine"] == "TileEngine" and run["batch_size"] == 1 and run["sampler_calls"] == 4
    assert run["device"] == "cpu" and run["precision"] == "fp32" and run["compile"] is None
    assert main([*args, "-o", str(tmp_path / "bf16.zarr"), "--precision", "bf16"]) == 2
    assert not (tmp_path / "bf16.zarr").exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--precision bf16" in err[0] and "CUDA" in err[0]


def test_natural_reconstruct_runs_in_the_engine_and_reads_its_options(tmp_path: Path) -> None:
    """A photograph's zero-shot restoration: the record says how the engine ran it; bf16 on a CPU is refused."""
    need(REPO / "checkpoints" / "photos_prior", DEMO / "kodim23.png")
    from PIL import Image

    from scorerecon.modalities.io.store import attrs_json, open_store

    photo = tmp_path / "small.png"
    Image.open(DEMO / "kodim23.png").convert("RGB").crop((200, 150, 264, 214)).save(photo)
    args = ["reconstruct", "--task", "deblur", "--input", str(photo), "--solver", "prox", "--nfe", "2",
            "--threads", "1", "--quiet", "--device", "cpu"]
    assert main([*args, "-o", str(tmp_path / "out.zarr"), "--batch-size", "2"]) == 0
    record = attrs_json(open_store(tmp_path / "out.zarr"), "reconstruction") or {}
    run = record["execution"]
    assert run["engine"] == "TileEngine" and run["device"] == "cpu" and run["precision"] == "fp32"
    assert main([*args, "-o", str(tmp_path / "bf16.zarr"), "--precision", "bf16"]) == 2
    assert not (tmp_path / "bf16.zarr").exists()
    assert main(["evaluate", "--task", "sr", "--input", str(photo), "--precision", "tf32", "--device", "cpu",
                 "--quiet"]) == 2
