"""Test-time adaptation (models/adaptation.py) on a tiny, randomly initialised MONAI UNet.

Mechanics (no trained prior, no PSNR): the adapted copy starts as the base model, an Adam
step lowers the self-supervised data-consistency loss, the base weights never change, the
adapter is shared by the batch, runs are reproducible from their seeds, and inside a sampler the
adaptation costs no network evaluation. The recorrupted (R2R) adaptation for denoising is checked
by what it is for: from one noisy image alone, an untrained network learns to denoise it.
"""

from __future__ import annotations

import pytest
import torch

from scorerecon.models.adaptation import (
    TestTimeAdaptation,
    adapt_model,
    adapter_parameters,
    dsm_adaptation,
    recorrupted_adaptation,
)
from scorerecon.models.guidance import ConjugateGradientDataStep, MaskedTransformOperator
from scorerecon.models.networks import build_network, unet_config
from scorerecon.models.samplers import sample
from scorerecon.models.score_model import NetworkScoreModel
from scorerecon.models.sde import VPSDE, measurement_time

torch.set_num_threads(1)
SHAPE = (2, 1, 16, 16)  # two "slices" sharing one adapter


def tiny_model(seed: int = 0) -> NetworkScoreModel:
    torch.manual_seed(seed)
    config = unet_config("tiny", channels=[8, 16], attention_levels=[False, False], norm_num_groups=4,
                         num_head_channels=8)
    model = NetworkScoreModel(build_network(config, use_flash_attention=False), VPSDE(), "eps")
    # a fresh MONAI UNet zero-initialises its output convolution (it would predict eps = 0
    # whatever the input); give it weights so the prediction depends on every layer
    out = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    torch.nn.init.normal_(out.weight, std=0.05)
    return model.eval()


@pytest.fixture(scope="module")
def problem() -> tuple[MaskedTransformOperator, torch.Tensor]:
    """Pixel inpainting: a fixed random half of the pixels of two smooth images is measured."""
    gen = torch.Generator().manual_seed(1)
    mask = (torch.rand(1, 1, 16, 16, generator=gen) < 0.5).float()
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 16), torch.linspace(-1, 1, 16), indexing="ij")
    truth = torch.stack([torch.sin(2 * xx) * torch.cos(yy), 0.5 * xx * yy])[:, None]
    op = MaskedTransformOperator(mask)
    return op, op.A(truth)


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("adapter", ["lora", "norm"])
def test_adapter_starts_as_the_identity(adapter: str) -> None:
    model = tiny_model()
    adapted = adapt_model(model, adapter, rank=4, seed=3)
    x, t = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0)), torch.full((2,), 0.4)
    with torch.no_grad():
        assert torch.equal(adapted.predict(x, t).output, model.predict(x, t).output)
    params = adapter_parameters(adapted)
    n_adapter, n_model = sum(p.numel() for p in params), sum(p.numel() for p in model.parameters())
    assert 0 < n_adapter < 0.5 * n_model
    # only the adapter trains: no base weight of the copy requires grad
    names = {n for n, p in adapted.named_parameters() if p.requires_grad}
    if adapter == "lora":
        assert names and all(n.endswith((".up", ".down")) for n in names)
    else:
        assert any("norm" in n for n in names) and not any(n.endswith(".original") for n in names)


@pytest.mark.parametrize("adapter", ["lora", "norm"])
def test_adaptation_steps_lower_the_data_consistency_loss_and_leave_the_base_model(problem, adapter: str) -> None:
    op, y = problem
    model = tiny_model()
    before = _state(model)
    tta = TestTimeAdaptation(model, op, y, adapter=adapter, lr=1e-2)
    x, t = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2)), torch.full((2,), 0.3)

    def loss() -> float:
        with torch.no_grad():
            return float(tta.loss(tta.model.predict(x, t).x0))

    start = loss()
    for _ in range(10):
        with torch.enable_grad():
            tta.step(tta.model.predict(x, t))
    assert loss() < 0.9 * start
    assert tta.backward_passes == 10 and len(tta.losses) == 10
    after = _state(model)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    # in the copy, only the adapter moved: every frozen weight is still the original
    trained = {n for n, p in tta.model.named_parameters() if p.requires_grad}
    frozen = {k.replace(".parametrizations.weight.original", ".weight"): v
              for k, v in tta.model.state_dict().items() if k not in trained}
    assert all(torch.equal(before[k], frozen[k]) for k in frozen if k in before)
    assert sum(k in before for k in frozen) == sum(k not in trained for k in before)  # all of them compared


def _run(problem, seed: int, every: int = 1) -> tuple[torch.Tensor, TestTimeAdaptation, int]:
    op, y = problem
    model = tiny_model()
    tta = TestTimeAdaptation(model, op, y, ConjugateGradientDataStep(op, y, n_iter=3, lam=1e-2), lr=1e-2,
                             every=every, seed=seed)
    result = sample(tta.model, SHAPE, sampler="ddim", nfe=8, seed=seed, guidance=tta, eta=0.85)
    return result.x, tta, result.nfe


def test_sampling_with_adaptation_is_reproducible_and_costs_no_network_evaluation(problem) -> None:
    x1, tta1, nfe = _run(problem, seed=5)
    x2, tta2, _ = _run(problem, seed=5)
    assert torch.equal(x1, x2) and tta1.losses == tta2.losses
    assert nfe == 8  # the adaptation reuses the sampler's own network call (one backward pass each)
    assert tta1.backward_passes == 7  # every update but the last, noise-free one
    assert torch.isfinite(x1).all()
    x3, _, _ = _run(problem, seed=6)
    assert not torch.equal(x1, x3)
    _, sparse, _ = _run(problem, seed=5, every=3)
    assert sparse.backward_passes == 3  # steps 0, 3, 6


def test_adapter_is_shared_by_the_batch(problem) -> None:
    """One adapter for the volume: the gradient of every slice's misfit reaches the same parameters."""
    op, y = problem
    tta = TestTimeAdaptation(tiny_model(), op, y, lr=1e-2)
    x, t = torch.randn(SHAPE, generator=torch.Generator().manual_seed(4)), torch.full((2,), 0.3)
    with torch.enable_grad():
        pred = tta.model.predict(x, t)
        misfit = (op.A(pred.x0) - y).pow(2).flatten(1).sum(1)  # per slice
        per_slice = [torch.autograd.grad(misfit[i], tta.parameters, retain_graph=True) for i in range(2)]
    for grads in per_slice:
        assert any(float(g.abs().sum()) > 0 for g in grads)


def test_bad_adapter_requests_fail_clearly(problem) -> None:
    op, y = problem
    with pytest.raises(ValueError, match="unknown adapter"):
        adapt_model(tiny_model(), "dora")
    with pytest.raises(TypeError, match="torch.nn.Module"):
        adapt_model(object(), "lora")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lr > 0"):
        TestTimeAdaptation(tiny_model(), op, y, lr=0.0)


def _noisy_smooth_image(sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 48), torch.linspace(-1, 1, 48), indexing="ij")
    clean = (0.6 * torch.sin(3 * xx) * torch.cos(2 * yy))[None, None]
    return clean, clean + sigma * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))


def _tweedie_error(model: NetworkScoreModel, y: torch.Tensor, clean: torch.Tensor, sigma: float) -> float:
    t = torch.tensor([measurement_time(model.sde, sigma)])
    with torch.no_grad():
        x0 = model.predict(model.sde.alpha(t) * y, t).x0
    return float((x0 - clean).pow(2).mean())


def test_recorrupted_adaptation_learns_to_denoise_from_the_noisy_image_alone() -> None:
    """R2R's target is unbiased for the clean image: an untrained UNet fitted to the one noisy
    image ends far below the noise variance (returning ``y`` would score exactly ``sigma^2``)."""
    sigma = 0.2
    clean, y = _noisy_smooth_image(sigma)
    model = tiny_model()
    before = _state(model)
    assert _tweedie_error(model, y, clean, sigma) > sigma**2
    adapted, record = recorrupted_adaptation(model, y, sigma, steps=100, lr=1e-3, patch=32, batch=4, multiple=2)
    assert _tweedie_error(adapted, y, clean, sigma) < 0.25 * sigma**2
    assert record["loss_last_tenth"] < record["loss_first_tenth"]
    assert record["patch"] == 32 and record["steps"] == 100 and record["adapter"] == "full"
    assert record["adapter_parameters"] == sum(p.numel() for p in model.parameters())
    after = _state(model)
    assert all(torch.equal(before[k], after[k]) for k in before)  # the caller's model is untouched
    assert not any(p.requires_grad for p in adapted.parameters())


def test_recorrupted_adaptation_is_reproducible_from_its_seed() -> None:
    sigma = 0.2
    _, y = _noisy_smooth_image(sigma)
    runs = [recorrupted_adaptation(tiny_model(), y, sigma, steps=3, patch=16, multiple=2, seed=s)[0] for s in (5, 5, 6)]
    states = [_state(m) for m in runs]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])
    _, record = recorrupted_adaptation(tiny_model(), y, sigma, adapter="lora", steps=2, patch=16, multiple=2)
    assert 0 < record["adapter_parameters"] < sum(p.numel() for p in tiny_model().parameters())


def test_recorrupted_adaptation_rejects_what_it_cannot_fit() -> None:
    _, y = _noisy_smooth_image(0.2)
    with pytest.raises(ValueError, match="noisy y"):
        recorrupted_adaptation(tiny_model(), y, 0.0)
    with pytest.raises(ValueError, match="too small"):
        recorrupted_adaptation(tiny_model(), y[..., :6, :6], 0.2)
    with pytest.raises(ValueError, match="unknown adapter"):
        recorrupted_adaptation(tiny_model(), y, 0.2, adapter="dora")


def test_dsm_adaptation_fits_the_drawn_pairs_and_leaves_the_base() -> None:
    """Target-adaptive fine-tuning: pairs drawn from one image make the score model's Tweedie estimate of
    that image (at a moderate noise level) much better than the untrained model's; same seed, same copy."""
    clean, _ = _noisy_smooth_image(0.2)

    def draw(rng):
        k = int(rng.integers(0, 8))
        patch = torch.rot90(clean, k % 4, dims=(-2, -1))
        return (patch.flip(-1) if k >= 4 else patch).repeat(4, 1, 1, 1), None

    sigma = 0.3
    noisy = clean + sigma * torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))
    model = tiny_model()
    before = _state(model)
    adapted, record = dsm_adaptation(model, draw, steps=60, lr=1e-3, seed=2)
    assert _tweedie_error(adapted, noisy, clean, sigma) < 0.5 * _tweedie_error(model, noisy, clean, sigma)
    assert record["method"] == "dsm" and record["steps"] == 60 and record["adapter"] == "full"
    assert all(torch.equal(before[k], v) for k, v in _state(model).items())
    again, _ = dsm_adaptation(tiny_model(), draw, steps=3, lr=1e-3, seed=2)
    twice, _ = dsm_adaptation(tiny_model(), draw, steps=3, lr=1e-3, seed=2)
    assert all(torch.equal(a, b) for a, b in zip(_state(again).values(), _state(twice).values(), strict=True))
    with pytest.raises(ValueError, match="steps >= 1"):
        dsm_adaptation(model, draw, steps=0)
