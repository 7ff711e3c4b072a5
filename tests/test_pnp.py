"""The PnP solver (pipelines/tasks/pnp.py): exact data consistency, determinism, batch independence, noisy
path, refusals, and ``scorerecon evaluate --solvers pnp`` end to end.

Runs on a real photograph that ships with scikit-image (the coffee cup), so it needs no shared data;
the prior is the committed ``checkpoints/photos_prior``. Plumbing and invariants, not quality.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data as skdata

from scorerecon.modalities.natural import degradations as deg
from scorerecon.models.checkpoint import load_score_model
from scorerecon.pipelines.tasks.natural import natural_problem, restore_zero_shot
from scorerecon.pipelines.tasks.pnp import pnp_restore, sigma_ladder

REPO = Path(__file__).resolve().parents[1]
PRIOR = REPO / "checkpoints" / "photos_prior"


@pytest.fixture(scope="module")
def prior():
    model = load_score_model(PRIOR)
    model.eval()
    return model


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """Two 32x32 crops of skimage's coffee photograph, (2, 3, 32, 32) float32 in [0, 1]."""
    img = skdata.coffee().astype(np.float32) / 255.0
    crops = [img[100:132, 200:232], img[250:282, 380:412]]
    return torch.from_numpy(np.stack(crops).transpose(0, 3, 1, 2).copy())


def test_ladder_is_geometric_from_top_to_bottom() -> None:
    ladder = sigma_ladder(5, 1.0, 0.01)
    assert ladder[0] == pytest.approx(1.0) and ladder[-1] == pytest.approx(0.01)
    assert np.allclose(ladder[1:] / ladder[:-1], ladder[1] / ladder[0])
    assert sigma_ladder(1, 1.0, 0.05).tolist() == [0.05]
    with pytest.raises(ValueError):
        sigma_ladder(3, 0.01, 1.0)


def test_inpainting_keeps_the_observed_pixels_and_fills_the_rest(prior, photos) -> None:
    mask = deg.random_mask((32, 32), seed=1)
    op = deg.Inpainting(mask)
    problem = natural_problem(op.A(photos), op, prior.card, 0.0)
    rec = restore_zero_shot(problem, prior, "pnp", nfe=4, seed=0)
    seen = torch.from_numpy(mask).bool().expand_as(photos)
    assert rec.solver == "pnp" and rec.nfe == 4 and rec.spec["steps"] == 4 and torch.isfinite(rec.image).all()
    assert torch.allclose(rec.image[seen], photos[seen], atol=1e-5)  # noise-free: exact projection onto A x = y
    unseen_error = (rec.image - photos)[~seen].abs().mean()
    assert unseen_error < photos[~seen].abs().mean()  # closer to the truth than the zero-filled start
    again = restore_zero_shot(problem, prior, "pnp", nfe=4, seed=0)
    assert torch.equal(rec.image, again.image)  # deterministic for a seed



def test_inpainting_starts_from_biharmonic_on_a_shorter_ladder(prior, photos) -> None:
    """Inpainting's PnP starts from the classical biharmonic estimate at sigma_max 0.5 (PNP_WARM_STARTS),
    computed per photo from the measurement alone; an explicit sigma_max keeps the zero-filled start."""
    from skimage.restoration import inpaint_biharmonic

    from scorerecon.pipelines.tasks.natural import classical_estimate

    mask = deg.random_mask((32, 32), seed=1)
    op = deg.Inpainting(mask)
    problem = natural_problem(op.A(photos), op, prior.card, 0.0)
    warm = classical_estimate(problem, "biharmonic")
    for k in range(2):
        y = op.A(photos)[k].permute(1, 2, 0).numpy().astype(np.float64)
        expected = inpaint_biharmonic(y, mask < 0.5, channel_axis=-1)
        assert np.allclose(problem.to_physical(warm)[k].permute(1, 2, 0).numpy(), expected, atol=1e-5)
    rec = restore_zero_shot(problem, prior, "pnp", nfe=4, seed=0)
    assert rec.spec["start"] == "biharmonic" and rec.spec["sigma_max"] == 0.5
    assert rec.spec["t_first"] < restore_zero_shot(problem, prior, "pnp", nfe=4, seed=0,
                                                   sigma_max=1.0).spec["t_first"]
    cold = restore_zero_shot(problem, prior, "pnp", nfe=4, seed=0, sigma_max=1.0)
    assert cold.spec["start"] == "pseudo_inverse" and not torch.equal(cold.image, rec.image)

def test_each_photo_is_independent_of_its_batch_mates(prior, photos) -> None:
    op = deg.BicubicDown((32, 32), 4)
    both = natural_problem(op.A(photos), op, prior.card, 0.0)
    alone = natural_problem(op.A(photos[:1]), op, prior.card, 0.0)
    rec_both = pnp_restore(both, prior, nfe=3, seed=7)
    rec_alone = pnp_restore(alone, prior, nfe=3, seed=7)
    assert torch.allclose(rec_both.image[:1], rec_alone.image, atol=1e-5)
    assert rec_both.seeds[0][0] == rec_alone.seeds[0][0]


def test_noisy_deblurring_uses_the_weighted_data_step_and_averages_samples(prior, photos) -> None:
    op = deg.Blur(deg.motion_kernel(7, 30.0), (32, 32))
    y = op.A(photos) + 2.0 / 255 * torch.randn(photos.shape, generator=torch.Generator().manual_seed(0))
    problem = natural_problem(y, op, prior.card, 2.0)
    rec = pnp_restore(problem, prior, nfe=3, seed=0, n_samples=2)
    assert rec.spec["sigma_min"] == pytest.approx(max(0.01, problem.info["noise_std_model"]))
    assert rec.std is not None and rec.samples.shape[0] == 2 and torch.isfinite(rec.image).all()
    assert not torch.equal(rec.samples[0], rec.samples[1])  # the orientation draws differ per sample
    # the provenance says how the tile engine ran it, as for the sampler-based solvers
    assert rec.execution["engine"] == "TileEngine" and rec.execution["device"] == "cpu"
    # one network call per ladder step and distinct orientation among the batch's elements
    draws = [np.stack([np.random.default_rng(e).integers(0, 8, 3) for e in streams]) for streams in rec.seeds]
    expected = sum(len(np.unique(d[:, k])) for d in draws for k in range(3))
    assert 2 * 3 <= expected <= 2 * 3 * photos.shape[0]
    assert rec.execution["sampler_calls"] == expected and rec.execution["batch_size"] == photos.shape[0]


def test_tweedie_denoising_records_its_execution(prior, photos) -> None:
    y = photos + 25.0 / 255 * torch.randn(photos.shape, generator=torch.Generator().manual_seed(0))
    problem = natural_problem(y, deg.Identity(photos.shape[-2:]), prior.card, 25.0)
    rec = restore_zero_shot(problem, prior, "tweedie_x8")
    assert rec.execution["engine"] == "TileEngine" and rec.execution["sampler_calls"] == 8


def test_bad_settings_are_refused(prior, photos) -> None:
    op = deg.Inpainting(deg.random_mask((32, 32), seed=1))
    problem = natural_problem(op.A(photos[:1]), op, prior.card, 0.0)
    with pytest.raises(ValueError, match="unknown PnP setting"):
        pnp_restore(problem, prior, nfe=2, eta=1.0)
    with pytest.raises(ValueError, match="lam must be positive"):
        pnp_restore(problem, prior, nfe=2, lam=0.0)
    with pytest.raises(ValueError, match="no start or init"):
        restore_zero_shot(problem, prior, "pnp", nfe=2, init=photos[:1])


def test_evaluate_cli_scores_pnp(tmp_path: Path) -> None:
    from PIL import Image

    from scorerecon.pipelines.cli import main

    path = tmp_path / "coffee_crop.png"
    Image.fromarray(skdata.coffee()[100:164, 200:264]).save(path)
    out = tmp_path / "inpaint.json"
    assert main(["evaluate", "--task", "inpaint", "--mask", "random", "--input", str(path), "--solvers", "pnp",
                 "--nfe", "3", "--threads", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert {"pnp", "biharmonic"} <= set(result["methods"]) and result["methods"]["pnp"]["nfe"] == 3
    # inpainting's PnP starts from the biharmonic estimate (PNP_WARM_STARTS), and the JSON says so
    assert result["params"]["solver_settings"]["pnp"]["start"] == "biharmonic"


def test_the_prior_sees_a_reflected_border_around_a_photo(prior, photos) -> None:
    """Natural problems carry ``border_context``: the network is evaluated on the image reflect-padded
    by that many pixels per side and its output is cropped back to the image."""
    from scorerecon.pipelines.tasks import SliceModel
    from scorerecon.pipelines.tasks.batching import prepare_engine
    from scorerecon.pipelines.tasks.natural import NATURAL_BORDER_CONTEXT

    problem = natural_problem(photos, deg.Identity((32, 32)), prior.card, 25.0)
    assert problem.border_context == NATURAL_BORDER_CONTEXT > 0
    assert prepare_engine(prior, problem, "cpu").net.context == NATURAL_BORDER_CONTEXT

    seen: list[torch.Tensor] = []

    class Recording:  # the real prior, with a record of the input it was handed
        sde, card = prior.sde, prior.card

        def predict(self, x, t, cond=None):
            seen.append(x)
            return prior.predict(x, t, cond)

    c = 16
    net = SliceModel(Recording(), multiple=8, context=c)
    t = torch.full((2,), 0.3)
    out = net.predict(photos, t)
    assert seen[0].shape[-2:] == (32 + 2 * c, 32 + 2 * c) and out.output.shape == photos.shape
    assert torch.equal(seen[0][..., c:-c, c:-c], photos)
    assert torch.equal(seen[0][..., c - 3, c:-c], photos[..., 3, :])  # a mirror image beyond the edge
    direct = prior.predict(seen[0], t).output[..., c:-c, c:-c]
    assert torch.allclose(out.output, direct)
    with pytest.raises(ValueError, match="context"):
        SliceModel(prior, context=-1)
