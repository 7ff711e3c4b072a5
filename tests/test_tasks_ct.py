"""CT reconstruction task on real head-CT slices (4x4-averaged to 64x64, few NFE) and the 3-D TV-z volume mode.

Mechanics only: every solver reduces the sinogram misfit of the prior's own sample and returns
finite HU, DDS reduces ``||A x - y||`` below the unguided sample's, and TV along z by ADMM makes a
small volume smoother along z than the same data step slice by slice. Whether diffusion beats
FBP / TV is measured by benchmarks/ct.py, not asserted here.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as nnf

from scorerecon.models.checkpoint import load_score_model
from scorerecon.models.guidance import Guidance
from scorerecon.pipelines.evaluate import prepare_slices
from scorerecon.pipelines.tasks import SOLVERS, SliceModel, reconstruct, run_sampler, solver_spec
from scorerecon.pipelines.tasks.ct import ct_geometry, ct_problem, simulate_sinogram
from scorerecon.pipelines.tasks.volume import reconstruct_volume, z_tv

REPO = Path(__file__).resolve().parents[1]
CKPT = REPO / "checkpoints" / "head_ct_ddpm"
HEAD_CT = REPO / "data" / "demo" / "head_ct_hu.nii.gz"
NFE = 10


@pytest.fixture(scope="module")
def model():
    if not (CKPT / "model_card.json").is_file():
        pytest.skip("checkpoints/head_ct_ddpm not present")
    return load_score_model(CKPT).eval()


def _slices(z: list[int]) -> tuple[np.ndarray, float]:
    img = nib.load(HEAD_CT)
    vol = np.asarray(img.dataobj, dtype=np.float32)  # (x, y, z), HU
    spacing = float(img.header.get_zooms()[0])
    hu = np.stack([vol[:, :, k].T for k in z])
    return prepare_slices(hu, downsample=4, square=True), spacing * 4


@pytest.fixture(scope="module")
def problem(model):
    hu, pixel = _slices([30])  # a training slice: mechanics only
    geometry = ct_geometry(hu.shape[-1], views=30)
    sino = simulate_sinogram(torch.from_numpy(hu), geometry, pixel)
    return ct_problem(sino, geometry, pixel, model.card["data"]["normalization"]), hu


@pytest.fixture(scope="module")
def unguided_residual(model, problem) -> float:
    prob = problem[0]
    result = run_sampler(SliceModel(model), prob.shape, solver_spec("dds"), Guidance(), NFE, 0, "cpu")
    return float(prob.residual(result.x))


@pytest.mark.parametrize("solver", SOLVERS)
def test_each_solver_reduces_the_sinogram_misfit(model, problem, unguided_residual, solver) -> None:
    prob, hu = problem
    nfe = 20 if solver == "dps" else NFE  # DPS diverges below ~20 steps with these priors (DEFAULT_SOLVERS)
    rec = reconstruct(prob, model, solver, nfe=nfe, seed=0)
    assert rec.image.shape == (1, 1, *hu.shape[-2:])
    assert torch.isfinite(rec.image).all()
    assert rec.nfe <= nfe
    residual = float(prob.residual(rec.model_state))
    assert residual < unguided_residual, f"{solver}: {residual:.3g} vs prior sample {unguided_residual:.3g}"


def test_dds_reduces_the_physical_residual(model, problem, unguided_residual) -> None:
    """||A x - y|| in physical units (line integrals), DDS vs. the prior's sample: a large reduction."""
    prob, _ = problem
    rec = reconstruct(prob, model, "dds", nfe=NFE, seed=0)
    assert float(prob.residual(rec.model_state)) < 0.25 * unguided_residual


def test_tv_z_admm_is_smoother_along_z_than_slice_by_slice(model) -> None:
    hu, pixel = _slices([28, 29, 30, 31])
    geometry = ct_geometry(hu.shape[-1], views=20)
    sino = simulate_sinogram(torch.from_numpy(hu), geometry, pixel)
    prob = ct_problem(sino, geometry, pixel, model.card["data"]["normalization"])
    flat = reconstruct_volume(prob, model, "dds", nfe=6, seed=0, tv_z=0.0)
    coupled = reconstruct_volume(prob, model, "dds", nfe=6, seed=0, tv_z=0.05)
    assert torch.isfinite(coupled.image).all()
    assert z_tv(coupled.model_state) < z_tv(flat.model_state)


def test_slice_model_pads_the_condition_with_the_state() -> None:
    """A conditional model on an image that is not a multiple of the UNet factor: x and cond padded alike."""
    from scorerecon.models.networks import build_network, unet_config
    from scorerecon.models.score_model import NetworkScoreModel
    from scorerecon.models.sde import VPSDE

    torch.manual_seed(0)
    net = build_network(unet_config("tiny", data_channels=1, cond_channels=2, channels=[8, 16],
                                    attention_levels=[False, False], norm_num_groups=8, num_head_channels=8))
    model = NetworkScoreModel(net, VPSDE(), "eps").eval()
    x, cond, t = torch.randn(2, 1, 30, 26), torch.randn(2, 2, 30, 26), torch.full((2,), 0.5)
    with torch.no_grad():
        out = SliceModel(model).predict(x, t, cond).output
        padded = model.predict(nnf.pad(x, (1, 1, 1, 1), mode="reflect"), t,
                               nnf.pad(cond, (1, 1, 1, 1), mode="reflect")).output[..., 1:-1, 1:-1]
    assert out.shape == x.shape
    torch.testing.assert_close(out, padded)


@pytest.mark.parametrize("grid", [80, 48], ids=["finer-prior-grid", "coarser-prior-grid"])
def test_the_priors_grid_projects_to_the_measured_sinogram(model, grid) -> None:
    """Reconstructing on another pixel size over the same FOV: the projector of the new grid, at the
    new pixel size with the measured detector bins, predicts the measured sinogram from the same
    anatomy resampled there (up to interpolation). Results come back on the input grid; the warm
    start maps FBP onto the new grid and back."""
    from scorerecon.modalities.ct.baselines import fbp_recon
    from scorerecon.modalities.ct.units import mu_to_hu

    hu, pixel = _slices([30])
    geometry = ct_geometry(hu.shape[-1], views=30)
    sino = simulate_sinogram(torch.from_numpy(hu), geometry, pixel)
    prob = ct_problem(sino, geometry, pixel, model.card["data"]["normalization"], grid=grid)
    assert prob.shape == (1, 1, grid, grid) and prob.info["grid"]["pixel_size_mm"] == pytest.approx(pixel * 64 / grid)
    m = prob.from_physical(torch.from_numpy(hu))
    assert float(prob.residual(m)) < 0.05  # measured 0.014 / 0.026 (0.009 on the input grid: float32 rounding)
    back = prob.to_physical(m)[0, 0]
    inside = torch.from_numpy(hu) > -900
    assert float((back - torch.from_numpy(hu))[inside].abs().median()) < 40.0  # HU, round trip via the grid
    fbp = mu_to_hu(fbp_recon(sino, geometry), pixel)
    rec = reconstruct(prob, model, "dds", nfe=4, seed=0, init=fbp, t_start=0.3)
    assert rec.image.shape == (1, 1, 64, 64) and torch.isfinite(rec.image).all() and rec.nfe == 4


def test_the_grid_rule_refines_but_does_not_coarsen() -> None:
    """A coarser input goes to the prior's finer pixel (more pixels, same FOV); a finer input keeps
    its grid (a coarse grid loses what the data resolve) unless asked; within 15 % nothing moves."""
    from scorerecon.pipelines.tasks.grid import reconstruction_grid

    coarse = reconstruction_grid((64, 64), (3.83, 3.83), (0.957, 0.957))
    assert coarse["resampled"] and coarse["shape"] == [256, 256]
    assert coarse["pixel_mm"][0] == pytest.approx(64 * 3.83 / 256)
    fine = reconstruction_grid((256, 256), (0.431, 0.431), (0.957, 0.957))
    assert not fine["resampled"] and fine["shape"] == [256, 256] and "finer" in fine["note"]
    forced = reconstruction_grid((256, 256), (0.431, 0.431), (0.957, 0.957), coarsen=True)
    assert forced["resampled"] and forced["shape"] == [115, 115]
    assert not reconstruction_grid((128, 128), (0.86, 0.86), (1.0, 1.0))["resampled"]
    assert not reconstruction_grid((128, 128), None, (1.0, 1.0))["resampled"]
