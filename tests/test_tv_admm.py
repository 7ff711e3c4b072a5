"""The TV data steps (pipelines/tasks/tv_admm.py): exact adjoints, lam = 0 is the DDS step, in-plane TV
smooths without coupling slices, and the evaluate variant ``tv_xy`` runs it on real CT slices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from scorerecon.models.guidance import conjugate_gradient
from scorerecon.pipelines.tasks.ct import ct_geometry, ct_problem, simulate_sinogram
from scorerecon.pipelines.tasks.tv_admm import TVxyADMM, TVzADMM, dxy, dxy_adjoint, dz, dz_adjoint

REPO = Path(__file__).resolve().parents[1]
HEAD_CT = REPO / "data" / "demo" / "head_ct_hu.nii.gz"


def _inner(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() * b.double()).sum())


def test_difference_operators_have_exact_adjoints() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, 9, 7, generator=gen, dtype=torch.float64)
    v = torch.randn(3, 4, 9, 7, generator=gen, dtype=torch.float64)
    assert abs(_inner(dxy(x), v) - _inner(x, dxy_adjoint(v))) < 1e-9 * _inner(v, v)
    w = torch.randn(2, 2, 9, 7, generator=gen, dtype=torch.float64)
    assert abs(_inner(dz(x), w) - _inner(x, dz_adjoint(w))) < 1e-9 * _inner(w, w)
    ramp = torch.arange(5.0).expand(1, 1, 4, 5)  # constant column differences, zero row differences
    assert torch.equal(dxy(ramp)[:, 0], torch.zeros(1, 4, 5)) and torch.equal(dxy(ramp)[0, 1, :, :-1], torch.ones(4, 4))


@pytest.fixture(scope="module")
def ct_case():
    import nibabel as nib

    vol = np.asarray(nib.load(HEAD_CT).dataobj, dtype=np.float32)
    hu = np.stack([vol[::4, ::4, k].T for k in (30, 40)])  # two training slices, 64 x 64 at 3.8 mm
    geometry = ct_geometry(hu.shape[-1], views=8)
    sino = simulate_sinogram(torch.from_numpy(hu), geometry, 3.83)
    norm = {"method": "fixed", "values": [-1000.0, 400.0], "range": [-1.0, 1.0], "clip": True}
    prob = ct_problem(sino, geometry, 3.83, norm)
    estimate = prob.from_physical(torch.from_numpy(hu)[:, None]) + 0.3 * torch.randn(prob.shape,
                                                                                   generator=torch.Generator().manual_seed(1))
    return prob, estimate


def test_zero_weight_is_the_dds_step(ct_case) -> None:
    prob, x0 = ct_case
    op, y = prob.operator, prob.y
    dds = conjugate_gradient(lambda w: op.normal(w) + 1e-2 * w, op.AH(y) + 1e-2 * x0, x0, 5)
    for step in (TVxyADMM(op, y, lam=0.0), TVzADMM(op, y, lam=0.0)):
        assert torch.allclose(step.on_x0(x0), dds)


def test_in_plane_tv_smooths_each_slice_on_its_own(ct_case) -> None:
    prob, x0 = ct_case
    plain = TVxyADMM(prob.operator, prob.y, lam=0.0).on_x0(x0)
    smooth = TVxyADMM(prob.operator, prob.y, lam=2e-2).on_x0(x0)
    assert float(dxy(smooth).abs().sum()) < 0.9 * float(dxy(plain).abs().sum())
    # slice 1 alone (its own measurement) gives the same step as inside the batch of two
    alone = prob.select([1])
    single = TVxyADMM(alone.operator, alone.y, lam=2e-2).on_x0(x0[1:])
    assert torch.allclose(single, smooth[1:], atol=1e-5)


def test_evaluate_variant_runs_the_tv_step_on_ct(tmp_path) -> None:
    from scorerecon.pipelines.evaluate import evaluate

    ckpt = REPO / "checkpoints" / "head_ct_ddpm"
    if not (ckpt / "model_card.json").is_file():
        pytest.skip("checkpoints/head_ct_ddpm not present")
    store = tmp_path / "ct.zarr"
    from scorerecon.pipelines.cli import main

    assert main(["ingest", str(HEAD_CT), "-o", str(store)]) in (0, None)
    result = evaluate("ct", str(store), [30], checkpoint=str(ckpt), nfe=3, seed=0, solvers=["dds"], baselines=["tv"],
                      crop=64, views=8, tuning=True, warm_start="none", tv_xy=0.0,
                      variants={"dds_tvxy": {"solver": "dds", "tv_xy": 2e-3}})
    assert result["params"]["solver_settings"]["dds"]["tv_xy"] == 0.0  # tv_xy=0: the plain DDS step
    assert result["params"]["solver_settings"]["dds_tvxy"]["tv_xy"] == 2e-3
    plain, tvxy = result["methods"]["dds"], result["methods"]["dds_tvxy"]
    assert np.isfinite(tvxy["psnr"]) and tvxy["nfe"] == plain["nfe"]
    assert tvxy["psnr"] != plain["psnr"]  # a different data step ran


def test_reconstruct_cli_runs_and_records_the_tv_step(tmp_path, capsys) -> None:
    from scorerecon.modalities.io.store import open_store
    from scorerecon.pipelines.cli import main

    ckpt = REPO / "checkpoints" / "head_ct_ddpm"
    if not (ckpt / "model_card.json").is_file():
        pytest.skip("checkpoints/head_ct_ddpm not present")
    store = tmp_path / "ct.zarr"
    assert main(["ingest", str(HEAD_CT), "-o", str(store)]) in (0, None)
    common = ["reconstruct", "--task", "ct", "--input", str(store), "--slices", "40", "--views", "8", "--crop", "32",
              "--nfe", "2", "--threads", "1", "--quiet"]
    assert main([*common, "-o", str(tmp_path / "tv.zarr"), "--tv-xy", "0.002"]) == 0
    assert open_store(tmp_path / "tv.zarr").attrs["reconstruction"]["tv_xy"] == 0.002
    from scorerecon.pipelines.tasks import TV_XY, WARM_START

    assert main([*common, "-o", str(tmp_path / "default.zarr")]) == 0  # CT's defaults: TV step, warm from TV
    record = open_store(tmp_path / "default.zarr").attrs["reconstruction"]
    assert record["tv_xy"] == TV_XY["ct"] > 0 and record["warm_start"]["from"] == WARM_START["ct"] == "tv"
    assert main([*common, "-o", str(tmp_path / "plain.zarr"), "--tv-xy", "0"]) == 0
    plain = open_store(tmp_path / "plain.zarr")
    assert plain.attrs["reconstruction"]["tv_xy"] == 0.0
    assert not np.array_equal(plain["image"].values, open_store(tmp_path / "tv.zarr")["image"].values)
    capsys.readouterr()
    assert main([*common, "-o", str(tmp_path / "bad.zarr"), "--tv-xy", "-1"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--tv-xy must be >= 0" in err[0] and not (tmp_path / "bad.zarr").exists()
    for extra, says in ((["--solver", "dps"], "not 'dps'"), (["--tv-z", "0.01"], "do not combine")):
        assert main([*common, "-o", str(tmp_path / "dropped.zarr"), "--tv-xy", "0.002", *extra]) != 0
        err = capsys.readouterr().err.strip().splitlines()  # an explicit weight no step would use is refused
        assert len(err) == 1 and says in err[0] and not (tmp_path / "dropped.zarr").exists()


def test_evaluate_refuses_a_tv_weight_no_solver_uses() -> None:
    from scorerecon.errors import InputError
    from scorerecon.pipelines.evaluate import evaluate

    with pytest.raises(InputError, match="does not use"):
        evaluate("ct", None, [0], solvers=["dps"], views=8, tv_xy=2e-3, images=np.zeros((1, 32, 32)),
                 pixel_spacing=(1.0, 1.0))


def test_dds_setting_selects_the_tv_step_and_keeps_slices_independent(ct_case) -> None:
    from scorerecon.models.checkpoint import load_score_model
    from scorerecon.pipelines.tasks import make_guidance, reconstruct, solver_spec

    prob, _ = ct_case
    assert isinstance(make_guidance("dds", prob.operator, prob.y, solver_spec("dds", tv_xy=2e-3)), TVxyADMM)
    assert not isinstance(make_guidance("dds", prob.operator, prob.y, solver_spec("dds")), TVxyADMM)
    ckpt = REPO / "checkpoints" / "head_ct_ddpm"
    if not (ckpt / "model_card.json").is_file():
        pytest.skip("checkpoints/head_ct_ddpm not present")
    model = load_score_model(ckpt).eval()
    from scorerecon.pipelines.engine import EngineConfig

    prob.slice_ids = [30, 40]  # each slice's noise stream named by its index, as evaluate / reconstruct do
    with torch.no_grad():
        whole = reconstruct(prob, model, "dds", nfe=2, seed=0, tv_xy=2e-3, engine=EngineConfig(batch_size=2))
        cut = reconstruct(prob, model, "dds", nfe=2, seed=0, tv_xy=2e-3, engine=EngineConfig(batch_size=1))
    assert whole.spec["tv_xy"] == 2e-3 and cut.execution["sampler_calls"] == 2  # one slice per call
    torch.testing.assert_close(cut.model_state, whole.model_state, rtol=0, atol=1e-3)
