"""Natural-image tasks: Kodak datasets, every solver end to end on the trained priors, the evaluate CLI.

Solvers run on real 32x32 held-out Kodak crops with a few NFE under the committed checkpoints
(checkpoints/photos_prior, photos_sr4, photos_lowlight): plumbing, not quality.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from real_data import SHARED_DATA

from scorerecon.errors import InputError
from scorerecon.modalities.natural import degradations as deg
from scorerecon.modalities.natural.datasets import (
    HOLDOUT,
    LowLightPairs,
    NaturalPatches,
    SuperResolutionPairs,
    load_rgb,
    lowlight_condition,
)
from scorerecon.models.checkpoint import load_score_model
from scorerecon.models.samplers import sample
from scorerecon.pipelines.cli import main
from scorerecon.pipelines.tasks import SliceModel
from scorerecon.pipelines.tasks.natural import (
    DDRMGuidance,
    natural_problem,
    restore_conditional,
    restore_zero_shot,
)

KODAK = SHARED_DATA / "natural" / "kodak"
REPO = Path(__file__).resolve().parents[1]
PRIOR = REPO / "checkpoints" / "photos_prior"
pytestmark = pytest.mark.skipif(not KODAK.is_dir(), reason="shared Kodak images not available")


@pytest.fixture(scope="module")
def prior():
    model = load_score_model(PRIOR)
    model.eval()
    return model


@pytest.fixture(scope="module")
def clean() -> torch.Tensor:
    """Held-out kodim23 (parrots), a 32x32 crop, (1, 3, 32, 32) float32 in [0, 1]."""
    img = load_rgb(KODAK / "kodim23.png")[200:232, 300:332]
    return torch.from_numpy(img.transpose(2, 0, 1)[None].copy())


def test_datasets_hold_out_the_evaluation_images() -> None:
    config = {"kodak": str(KODAK), "patch_size": [24, 24], "scale": 4}
    data = NaturalPatches(config)
    stems = {p.stem for p in data.paths}
    assert not stems & set(HOLDOUT) and len(stems) == 24 - len(HOLDOUT) + 4
    rng = np.random.default_rng(0)
    x = data.sample_batch(5, rng)
    assert x.shape == (5, 3, 24, 24) and x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
    card = data.describe()
    assert len(card["sources"]) == len(data.paths) and all(len(s["sha256"]) == 64 for s in card["sources"])
    assert card["normalization"]["values"] == [0.0, 1.0] and card["holdout"] == list(HOLDOUT)
    hr, cond = SuperResolutionPairs(config).sample_batch(3, rng)
    assert hr.shape == cond.shape == (3, 3, 24, 24)
    # the condition is the bicubic down-up of the HR patch
    hr01 = (hr.double() + 1) / 2
    again = deg.bicubic_resize(deg.BicubicDown((24, 24), 4).A(hr01), (24, 24))
    assert torch.allclose((cond.double() + 1) / 2, again, atol=1e-5)
    x0, dark = LowLightPairs(config).sample_batch(3, rng)
    assert x0.shape == dark.shape and float(dark.mean()) < float(x0.mean())  # darker


def _linear_cases(shape: tuple[int, int]) -> dict[str, tuple[deg.SVDOperator, float]]:
    return {
        "sr": (deg.BicubicDown(shape, 4), 0.0),
        "deblur": (deg.Blur(deg.gaussian_kernel(7, 1.5), shape), 1.0),
        "inpaint": (deg.Inpainting(deg.make_mask("random", shape, seed=0)), 0.0),
        "denoise": (deg.Identity(shape), 25.0),
    }


@pytest.mark.parametrize("task", ["sr", "deblur", "inpaint", "denoise"])
def test_zero_shot_solvers_fit_the_data(prior, clean, task) -> None:
    op, sigma = _linear_cases(tuple(clean.shape[-2:]))[task]
    y = deg.add_noise(op.A(clean), sigma, seed=0)
    problem = natural_problem(y, op, prior.card, sigma)
    free = sample(SliceModel(prior), problem.shape, sampler="ddim", nfe=4, seed=0, eta=0.85).x
    free_residual = float(problem.residual(free)[0])
    # DPS needs more steps than the data-step solvers (its gradient through the network is
    # amplified by 1 / alpha_t at high noise; it diverges at a handful of steps)
    for solver, nfe in (("ddrm", 4), ("prox", 4), ("dps", 50)):
        rec = restore_zero_shot(problem, prior, solver, nfe=nfe, seed=0)
        assert rec.image.shape == clean.shape and torch.isfinite(rec.image).all()
        assert rec.nfe <= nfe
        assert float(problem.residual(rec.model_state)[0]) < free_residual, solver


def test_tweedie_denoiser_removes_noise(prior, clean) -> None:
    op = deg.Identity(tuple(clean.shape[-2:]))
    y = deg.add_noise(clean, 25.0, seed=0)
    rec = restore_zero_shot(natural_problem(y, op, prior.card, 25.0), prior, "tweedie")
    assert rec.nfe == 1
    assert float((rec.image - clean).pow(2).mean()) < float((y - clean).pow(2).mean())



def test_tweedie_tta_adapts_a_copy_of_the_prior_to_the_photo(prior, clean) -> None:
    """``tweedie_tta``: R2R fine-tuning of a copy on the noisy crop itself, then the 8-fold Tweedie
    denoiser; the record says what was adapted, the shipped prior's weights never change, and the
    result is reproducible from the seed."""
    op = deg.Identity(tuple(clean.shape[-2:]))
    y = deg.add_noise(clean, 25.0, seed=0)
    problem = natural_problem(y, op, prior.card, 25.0)
    weights = {k: v.clone() for k, v in prior.state_dict().items()}
    plain = restore_zero_shot(problem, prior, "tweedie_x8")
    runs = [restore_zero_shot(problem, prior, "tweedie_tta", seed=3, steps=4, patch=32) for _ in range(2)]
    assert torch.equal(runs[0].image, runs[1].image) and not torch.equal(runs[0].image, plain.image)
    record = runs[0].spec["adaptation"]
    assert record["method"] == "r2r" and record["steps"] == 4 and record["patch"] == 32 and record["seed"] == 3
    assert runs[0].nfe == 8 and runs[0].solver == "tweedie_tta"
    assert all(torch.equal(weights[k], v) for k, v in prior.state_dict().items())
    assert float((runs[0].image - clean).pow(2).mean()) < float((y - clean).pow(2).mean())
    blur = deg.Blur(deg.gaussian_kernel(5, 1.0), (32, 32))
    with pytest.raises(ValueError, match="identity operator"):
        restore_zero_shot(natural_problem(blur.A(clean), blur, prior.card, 25.0), prior, "tweedie_tta")

def test_measurement_start_begins_at_the_noisy_image(prior, clean) -> None:
    """One DDIM step from ``alpha_t* y`` at ``t*`` (no noise added) is Tweedie's estimate exactly;
    more steps stay on ``[eps, t*]`` and spend exactly their NFE."""
    op = deg.Identity(tuple(clean.shape[-2:]))
    y = deg.add_noise(clean, 25.0, seed=0)
    problem = natural_problem(y, op, prior.card, 25.0)
    tweedie = restore_zero_shot(problem, prior, "tweedie")
    for solver in ("sdedit", "ddrm"):
        one = restore_zero_shot(problem, prior, solver, nfe=1, seed=3, start="measurement")
        assert one.nfe == 1 and one.spec["start"] == "measurement"
        assert abs(one.spec["t_start"] - tweedie.spec["t"]) < 1e-6
        assert torch.allclose(one.image, tweedie.image, atol=1e-5), solver
    many = restore_zero_shot(problem, prior, "prox", nfe=5, seed=0, start="measurement", n_samples=2)
    assert many.nfe == 5 and torch.isfinite(many.image).all()
    assert float((many.image - clean).pow(2).mean()) < float((y - clean).pow(2).mean())
    sr = natural_problem(deg.BicubicDown((32, 32), 4).A(clean), deg.BicubicDown((32, 32), 4), prior.card)
    with pytest.raises(ValueError, match="denoising"):
        restore_zero_shot(sr, prior, "ddrm", nfe=2, start="measurement")


def test_ccdf_start_from_an_estimate(prior, clean) -> None:
    """``init`` + ``t_start`` run the core's warm start: the NFE are spent on ``[eps, t_start]`` and a
    start very close to 0 returns (nearly) the data-consistent initial estimate."""
    op = deg.Inpainting(deg.make_mask("random", tuple(clean.shape[-2:]), seed=0))
    y = op.A(clean)
    problem = natural_problem(y, op, prior.card)
    rec = restore_zero_shot(problem, prior, "prox", nfe=3, seed=0, init=clean, t_start=1e-3)
    assert rec.nfe == 3 and rec.spec["start"] == "init" and rec.spec["t_start"] == 1e-3
    assert float((rec.image - clean).abs().max()) < 0.05


def test_ddrm_rejects_operators_without_svd(clean) -> None:
    class Plain(deg.LinearOperator):
        def A(self, x):
            return x

        def AH(self, y):
            return y

    with pytest.raises(ValueError, match="SVD"):
        DDRMGuidance(Plain(), clean)


@pytest.mark.parametrize("name", ["photos_sr4", "photos_lowlight"])
def test_conditional_models_restore(clean, name) -> None:
    model = load_score_model(REPO / "checkpoints" / name)
    if name.endswith("_sr4"):
        cond = deg.bicubic_resize(deg.BicubicDown((32, 32), 4).A(clean), (32, 32)).float()
    else:
        dark = deg.LowLight()(clean[0].numpy().transpose(1, 2, 0), np.random.default_rng(0))
        dark = torch.from_numpy(dark.transpose(2, 0, 1)[None].copy())
        gain = float(model.card["data"]["cond_gain"])
        cond = torch.from_numpy(lowlight_condition(dark[0].numpy().transpose(1, 2, 0), gain).transpose(2, 0, 1)[None])
    est, nfe, _ = restore_conditional(model, cond, nfe=3, seed=0, n_samples=2)
    assert est.shape == clean.shape and nfe == 3 and torch.isfinite(est).all()
    if name.endswith("_sr4"):  # the output explains the low-resolution image it was conditioned on
        down = deg.BicubicDown((32, 32), 4)
        lr = down.A(clean)
        assert float((down.A(est) - lr).norm() / lr.norm()) < 0.1
    else:  # brighter and closer to the scene than the dark input
        assert float((est.clamp(0, 1) - clean).pow(2).mean()) < float((dark - clean).pow(2).mean())


def test_evaluate_cli_writes_json(tmp_path, capsys) -> None:
    out = tmp_path / "denoise.json"
    rc = main(["evaluate", "--task", "denoise", "--input", str(KODAK / "kodim05.png"), "--crop", "32",
               "--sigma", "25", "--nfe", "2", "--solvers", "tweedie,ddrm", "--baselines", "tv", "--json", str(out),
               "--threads", "1"])
    assert rc == 0, capsys.readouterr().err
    result = json.loads(out.read_text())
    assert result["task"] == "denoise" and "RGB" in result["convention"]
    assert set(result["methods"]) == {"tv", "tweedie", "ddrm"}
    for name, m in result["methods"].items():
        assert {"family", "psnr", "ssim", "nfe", "seconds"} <= set(m)
        assert m["family"] == ("classical" if name == "tv" else "diffusion")
    assert result["methods"]["tweedie"]["nfe"] == 1 and result["params"]["image_shapes"] == [[32, 32]]


def test_evaluate_refuses_training_images(tmp_path, capsys) -> None:
    # scikit-image's astronaut trained photos_lowlight (as it trained every photo prior; no Kodak image did)
    import skimage

    astronaut = Path(skimage.__file__).parent / "data" / "astronaut.png"
    rc = main(["evaluate", "--task", "lowlight", "--input", str(astronaut), "--crop", "32", "--nfe", "2",
               "--json", str(tmp_path / "x.json")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "train" in err
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize("case", ["garbage", "missing", "crop"])
def test_evaluate_bad_input_is_one_line(tmp_path, capsys, case) -> None:
    bad = tmp_path / "broken.png"
    if case == "garbage":
        bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    args = ["evaluate", "--task", "sr", "--input", str(bad if case != "crop" else KODAK / "kodim05.png"),
            "--nfe", "2", "--json", str(tmp_path / "x.json")]
    if case == "crop":
        args += ["--crop", "4096"]
    rc = main(args)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err


def test_evaluate_reports_per_image_starts_and_conditional_samples() -> None:
    from scorerecon.pipelines.evaluate_natural import evaluate_natural

    images = [KODAK / "kodim05.png", KODAK / "kodim23.png"]
    res = evaluate_natural("denoise", images, nfe=2, crop=32, solvers=["ddrm", "sdedit"], baselines=["tv"])
    assert res["params"]["start"] == "measurement"
    assert res["params"]["solver_settings"]["ddrm"]["start"] == "measurement"
    for m in res["methods"].values():
        assert len(m["per_image"]) == 2
        assert abs(np.mean([v["psnr"] for v in m["per_image"]]) - m["psnr"]) < 1e-3
    cold = evaluate_natural("denoise", images[:1], nfe=2, crop=32, solvers=["ddrm"], baselines=[], start="prior")
    assert set(cold["methods"]) == {"ddrm_prior_start"}
    sr = evaluate_natural("sr", images[:1], nfe=2, crop=32, solvers=["cond_sr"], baselines=[], cond_samples=1)
    assert set(sr["methods"]) == {"cond_sr_1"} and sr["methods"]["cond_sr_1"]["nfe"] == 2
    sr4 = evaluate_natural("sr", images[:1], nfe=2, crop=32, solvers=["cond_sr"], baselines=[])
    assert sr4["methods"]["cond_sr"]["nfe"] == 8  # 4 samples x 2 NFE: totals compare at equal NFE
    with pytest.raises(InputError, match="start"):
        evaluate_natural("sr", images[:1], nfe=2, crop=32, start="measurement")
