"""Every sampler against the exact score of Gaussian data, under every SDE it applies to.

Data ``x_0 ~ N(mu, Sigma)`` (2-D, correlation 0.85) has the closed-form score of ``p_t`` for all
``t`` (:class:`AnalyticGaussianScoreModel`), so sample moments can be compared with the truth.

Tolerance for ``n`` samples: ``|mean_j - mu_j| <= 6 SE + b_mean`` with ``SE = sqrt(Sigma_jj/n)``;
``|C_ij - Sigma_ij| <= 6 SE_ij + b_cov sqrt(Sigma_ii Sigma_jj)`` with ``SE_ij = sqrt((Sigma_ii
Sigma_jj + Sigma_ij^2)/n)`` (Gaussian sample covariance). The bias allowances are stated per
sampler at the NFE used here and were measured with 10^5 samples: first-order discretisations
(``em``, ``rd``, ``ddpm``, ``ddim``) at 200 steps showed covariance biases up to 0.045 (VE
reverse-diffusion/ancestral), the predictor-corrector and annealed-Langevin samplers up to
0.01; deterministic samplers on VE carry a prior-mismatch mean bias ``~ |mu| sqrt(lambda) /
sigma_max ~ 0.02`` (the prior is ``N(0, sigma_max^2)``, not ``N(mu, Sigma + sigma_max^2)``).
Hence ``b_mean = 0.025`` and ``b_cov = 0.06`` (first order) / ``0.03`` (PC, ODE-RK4).
"""

from __future__ import annotations

import math

import pytest
import torch
from analytic_gaussian import AnalyticGaussianScoreModel

from scorerecon.models.parametrization import Prediction
from scorerecon.models.samplers import (
    SAMPLERS,
    AncestralPredictor,
    log_likelihood,
    sample,
)
from scorerecon.models.score_model import NetworkScoreModel, ScoreModel
from scorerecon.models.sde import SDE, SDES, VESDE, VPSDE, SubVPSDE

torch.set_num_threads(1)

MU = torch.tensor([1.0, -0.5], dtype=torch.float64)
COV = torch.tensor([[1.0, 0.6], [0.6, 0.5]], dtype=torch.float64)
N_SAMPLES = 12_000
N_SE = 6.0
B_MEAN = 0.025

# (sampler, options, nfe, covariance bias allowance, SDEs it applies to)
CASES = [
    ("em", {}, 200, 0.06, ("ve", "vp", "subvp")),
    ("rd", {}, 200, 0.06, ("ve", "vp", "subvp")),
    ("pc", {}, 400, 0.03, ("ve", "vp", "subvp")),
    ("pc", {"predictor": "ancestral", "n_corrector": 2}, 600, 0.03, ("ve", "vp")),
    ("ncsn", {}, 400, 0.03, ("ve",)),
    ("annealed_langevin", {"n_corrector": 2}, 600, 0.03, ("ve",)),
    ("ode", {"method": "rk4"}, 200, 0.03, ("ve", "vp", "subvp")),
    ("ode", {"method": "heun"}, 200, 0.03, ("vp",)),
    ("ddim", {"eta": 0.0}, 200, 0.06, ("ve", "vp", "subvp")),
    ("ddim", {"eta": 1.0}, 200, 0.06, ("ve", "vp", "subvp")),
    ("ddpm", {}, 200, 0.06, ("ve", "vp")),
]
PARAMS = [pytest.param(s, name, opts, nfe, b, id=f"{s}-{name}-{'-'.join(f'{k}{v}' for k, v in opts.items())}")
          for name, opts, nfe, b, sdes in CASES for s in sdes]


def gaussian_model(sde_name: str, kind: str = "eps", **kw) -> AnalyticGaussianScoreModel:
    return AnalyticGaussianScoreModel(SDES[sde_name](**kw), MU, COV, kind=kind)


def assert_moments(x: torch.Tensor, mu: torch.Tensor, cov: torch.Tensor, b_mean: float, b_cov: float) -> None:
    n = x.shape[0]
    assert torch.isfinite(x).all()
    var = cov.diagonal()
    se_mean = (var / n).sqrt()
    err_mean = (x.mean(0) - mu).abs()
    assert torch.all(err_mean <= N_SE * se_mean + b_mean), (x.mean(0), mu)
    scale = (var[:, None] * var[None, :]).sqrt()
    se_cov = ((var[:, None] * var[None, :] + cov**2) / n).sqrt()
    err_cov = (torch.cov(x.T) - cov).abs()
    assert torch.all(err_cov <= N_SE * se_cov + b_cov * scale), (torch.cov(x.T), cov)


@pytest.mark.parametrize("sde_name,name,opts,nfe,b_cov", PARAMS)
def test_sampler_matches_gaussian_truth(sde_name: str, name: str, opts: dict, nfe: int, b_cov: float) -> None:
    model = gaussian_model(sde_name, kind="score" if name == "pc" else "eps")
    res = sample(model, (N_SAMPLES, 2), name, nfe=nfe, seed=7, dtype=torch.float64, **opts)
    assert res.x.shape == (N_SAMPLES, 2) and res.nfe <= nfe and model.calls == res.nfe
    assert_moments(res.x, MU, COV, B_MEAN, b_cov)


def test_rk45_ode_sampler_and_budget() -> None:
    model = gaussian_model("vp")
    res = sample(model, (4000, 2), "ode", nfe=None, seed=3, dtype=torch.float64, method="rk45")
    assert res.nfe == model.calls > 0
    assert_moments(res.x, MU, COV, B_MEAN, 0.03)
    with pytest.raises(RuntimeError, match="more than nfe"):
        sample(gaussian_model("vp"), (8, 2), "ode", nfe=5, seed=3, method="rk45")


def test_wrong_sampler_is_rejected_not_silently_adapted() -> None:
    m = gaussian_model("vp")
    with pytest.raises(ValueError, match="VE"):
        sample(m, (2, 2), "ncsn", nfe=10)
    with pytest.raises(ValueError, match="VE"):
        sample(gaussian_model("subvp"), (2, 2), "ddpm", nfe=100)
    with pytest.raises(ValueError, match="beta_max"):
        sample(m, (2, 2), "ddpm", nfe=15)  # beta_max / N > 1: no DDPM chain with 15 steps
    with pytest.raises(ValueError, match="beta_max"):
        sample(m, (2, 2), "pc", nfe=20)  # 10 rungs of a VP ladder
    with pytest.raises(ValueError, match="unknown sampler"):
        sample(m, (2, 2), "nope", nfe=10)
    with pytest.raises(ValueError, match="nfe"):
        sample(m, (2, 2), "pc", nfe=1, n_corrector=1)


# --------------------------------------------------------------------------------------------
# log-likelihood through the probability-flow ODE
# --------------------------------------------------------------------------------------------
X_EVAL = torch.tensor([[1.0, -0.5], [2.0, 0.3], [0.0, -1.0], [1.5, -0.2]], dtype=torch.float64)


@pytest.mark.parametrize("sde_name", sorted(SDES))
def test_log_likelihood_exact_trace_matches_analytic(sde_name: str) -> None:
    """Within 1 % of ``log p_eps(x)``; and, with the true ``p_T`` in place of the prior, the ODE
    part alone is within 1e-3 (what is left of the 1 % is the SDE's prior mismatch at ``t = T``).
    For VE, ``sigma_max = 100``: with the default 50 the mismatch ``~ |z| |mu| / sigma_max^2``
    alone is ~1.3 % of these log-densities."""
    kw = {"sigma_max": 100.0} if sde_name == "ve" else {}
    model = gaussian_model(sde_name, **kw)
    res = log_likelihood(model, X_EVAL, trace="exact")
    true = model.logpdf(X_EVAL, model.sde.eps)
    assert torch.all(((res.logp - true) / true).abs() < 0.01), (res.logp, true)
    ode_only = res.delta_logp + model.logpdf(res.z, model.sde.T)
    assert torch.all(((ode_only - true) / true).abs() < 1e-3)
    assert res.nfe == model.calls
    bpd = res.bits_per_dim()
    torch.testing.assert_close(bpd, -res.logp / (2 * math.log(2)))


def test_log_likelihood_hutchinson_is_unbiased() -> None:
    """Skilling-Hutchinson with one Rademacher probe per sample: the mean over 400 independent
    probes lies within 6 standard errors (from the spread of the 400 estimates) of the exact
    value; with several probes per sample the spread shrinks."""
    model = gaussian_model("vp")
    x = X_EVAL[1:2].repeat(400, 1)
    exact = log_likelihood(model, X_EVAL[1:2], trace="exact").logp.item()
    one = log_likelihood(model, x, trace="hutchinson", n_probes=1, seed=11).logp
    se = one.std().item() / math.sqrt(one.numel())
    assert se > 0 and abs(one.mean().item() - exact) < N_SE * se
    four = log_likelihood(model, x[:100], trace="hutchinson", n_probes=4, probe="gaussian", seed=12).logp
    assert abs(four.mean().item() - exact) < N_SE * four.std().item() / 10
    assert four.std() < one.std()


# --------------------------------------------------------------------------------------------
# reproducibility and NFE accounting
# --------------------------------------------------------------------------------------------
SMALL = [  # (sde, sampler, options, nfe, expected NFE)
    ("ve", "em", {}, 20, 20),
    ("vp", "rd", {}, 20, 20),
    ("vp", "ddpm", {}, 40, 40),
    ("ve", "ddpm", {}, 20, 20),
    ("subvp", "pc", {"n_corrector": 2}, 31, 30),
    ("ve", "ncsn", {"n_corrector": 1}, 20, 20),
    ("ve", "annealed_langevin", {"n_corrector": 3}, 20, 18),
    ("vp", "ode", {"method": "rk4"}, 42, 40),
    ("vp", "ode", {"method": "heun"}, 21, 20),
    ("ve", "ode", {"method": "euler"}, 20, 20),
    ("vp", "ddim", {"eta": 0.0}, 10, 10),
    ("subvp", "ddim", {"eta": 1.0}, 10, 10),
]
SMALL_IDS = [f"{s}-{n}-{'-'.join(f'{k}{v}' for k, v in o.items())}" for s, n, o, _, _ in SMALL]


def test_every_registered_sampler_is_covered() -> None:
    assert {name for _, name, _, _, _ in SMALL} == set(SAMPLERS)
    assert {name for name, *_ in CASES} == set(SAMPLERS)


@pytest.mark.parametrize("sde_name,name,opts,nfe,expected", SMALL, ids=SMALL_IDS)
def test_seeded_determinism_and_nfe(sde_name: str, name: str, opts: dict, nfe: int, expected: int) -> None:
    def run(seed):
        model = gaussian_model(sde_name)
        res = sample(model, (6, 2), name, nfe=nfe, seed=seed, **opts)
        assert res.nfe == expected == model.calls, (res.nfe, expected, model.calls)
        return res.x

    a, b, c = run(3), run(3), run(4)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    gen = torch.Generator().manual_seed(3)
    torch.testing.assert_close(sample(gaussian_model(sde_name), (6, 2), name, nfe=nfe, seed=gen, **opts).x, a,
                               rtol=0, atol=0)


def test_rk45_is_deterministic_given_seed() -> None:
    xs = [sample(gaussian_model("subvp"), (6, 2), "ode", nfe=None, seed=s, method="rk45").x for s in (1, 1, 2)]
    assert torch.equal(xs[0], xs[1]) and not torch.allclose(xs[0], xs[2])


def test_default_nfe_and_result_record() -> None:
    model = gaussian_model("vp", N=30)
    res = sample(model, (3, 2), "ddpm", seed=5)  # default budget: sde.N
    assert res.nfe == 30 and res.seed == 5 and res.sampler == "ddpm" and res.seconds >= 0
    res = sample(gaussian_model("vp", N=30), (3, 2), "pc", seed=5, n_corrector=2, return_trajectory=True)
    assert res.nfe == 90 and len(res.trajectory) == 31


# --------------------------------------------------------------------------------------------
# DDPM = ancestral sampling on sde.discretize
# --------------------------------------------------------------------------------------------
def test_ddpm_uses_vp_discretize(monkeypatch: pytest.MonkeyPatch) -> None:
    """``ddpm`` takes its ``beta_i`` from ``VPSDE.discretize`` (once per step) and implements
    Ho et al.'s update ``x_{i-1} = (x_i + beta_i s) / sqrt(1 - beta_i) + sqrt(beta_i) z``."""
    calls = []
    original = VPSDE.discretize

    def spy(self, x, t):
        calls.append(t[0].item())
        return original(self, x, t)

    monkeypatch.setattr(VPSDE, "discretize", spy)
    model = gaussian_model("vp", N=50)
    res = sample(model, (4, 2), "ddpm", nfe=50, seed=0)
    assert res.nfe == 50 and len(calls) == 50
    assert calls[0] == pytest.approx(1.0) and calls[-1] == pytest.approx(model.sde.eps)
    monkeypatch.undo()

    sde = VPSDE(N=50)
    x = torch.randn(4, 2, dtype=torch.float64)
    i = 31
    t = torch.full((4,), i / 49, dtype=torch.float64)
    pred = model.predict(x, t)
    mean, std = AncestralPredictor(sde).update(x, t, None, pred, None)
    beta = sde.discrete_betas().double()[i]
    torch.testing.assert_close(mean, (x + beta * pred.score) / torch.sqrt(1 - beta))
    torch.testing.assert_close(std.flatten(), torch.full((4,), beta.sqrt().item(), dtype=torch.float64))


# --------------------------------------------------------------------------------------------
# the model interface: cond passes through; a MONAI network runs through sample()
# --------------------------------------------------------------------------------------------
class _CondRecorder:
    def __init__(self, sde: SDE) -> None:
        self.sde, self.seen = sde, []

    def predict(self, x, t, cond=None):
        self.seen.append(cond)
        return Prediction("eps", torch.zeros_like(x), x, self.sde.alpha(t), self.sde.sigma(t))


def test_cond_is_passed_to_predict() -> None:
    rec = _CondRecorder(VPSDE())
    assert isinstance(rec, ScoreModel)
    cond = torch.ones(2, 1, 4, 4)
    sample(rec, (2, 1, 4, 4), "ddim", nfe=3, seed=0, cond=cond)
    assert len(rec.seen) == 3 and all(c is not None and torch.equal(c, cond) for c in rec.seen)


def test_network_score_model_through_sample() -> None:
    from monai.networks.nets import DiffusionModelUNet

    torch.manual_seed(0)
    net = DiffusionModelUNet(spatial_dims=2, in_channels=1, out_channels=1, channels=(8, 8), num_res_blocks=1,
                             attention_levels=(False, False), norm_num_groups=8)
    for sde, name in ((VPSDE(), "ddim"), (VESDE(), "pc"), (SubVPSDE(), "ode")):
        model = NetworkScoreModel(net, sde, "v").eval()
        res = sample(model, (2, 1, 8, 8), name, nfe=4, seed=1)
        assert res.x.shape == (2, 1, 8, 8) and torch.isfinite(res.x).all() and res.nfe == 4
        again = sample(model, (2, 1, 8, 8), name, nfe=4, seed=1)
        assert torch.equal(res.x, again.x)


# --------------------------------------------------------------------------------------------
# warm start (CCDF): x_init diffused to t_start, then the usual reverse steps over [t_start, eps]
# --------------------------------------------------------------------------------------------
WARM = [("vp", "ddim", {"eta": 1.0}), ("vp", "ddim", {"eta": 0.0}), ("vp", "em", {}), ("vp", "ddpm", {}),
        ("vp", "rd", {}), ("ve", "pc", {}), ("subvp", "ode", {"method": "euler"})]


@pytest.mark.parametrize("sde_name,name,opts", WARM, ids=[f"{s}-{n}" for s, n, _ in WARM])
def test_warm_start_near_zero_returns_the_initialiser(sde_name: str, name: str, opts: dict) -> None:
    """``t_start -> eps``: nothing left to denoise, the sample is ``x_init`` (up to the tiny noise of t0)."""
    model = gaussian_model(sde_name)
    x_init = torch.tensor([[3.0, -2.0], [0.5, 0.25], [-1.0, 4.0]], dtype=torch.float64)
    res = sample(model, (3, 2), name, nfe=4, seed=0, x_init=x_init, t_start=1e-4, dtype=torch.float64, **opts)
    torch.testing.assert_close(res.x, x_init, rtol=0, atol=0.03)
    assert res.options["t_start"] == 1e-4


@pytest.mark.parametrize("sde_name,name,opts", WARM, ids=[f"{s}-{n}" for s, n, _ in WARM])
def test_warm_start_is_seeded_and_counts_only_the_steps_run(sde_name: str, name: str, opts: dict) -> None:
    x_init = torch.tensor([[3.0, -2.0]], dtype=torch.float64)
    runs = []
    for seed in (7, 7, 8):
        model = gaussian_model(sde_name)
        res = sample(model, (4, 2), name, nfe=30, seed=seed, x_init=x_init, t_start=0.3, dtype=torch.float64,
                     **opts)
        per_step = 2 if name == "pc" else 1
        assert res.nfe == model.calls == 30 // per_step * per_step
        runs.append(res.x)
    assert torch.equal(runs[0], runs[1]) and not torch.allclose(runs[0], runs[2])


def test_warm_start_from_data_samples_keeps_the_data_distribution() -> None:
    """Exact data diffused to t0 is a draw from p_t0, so the reverse steps from there end on the data law."""
    gen = torch.Generator().manual_seed(11)
    chol = torch.linalg.cholesky(COV)
    x_init = MU + torch.randn(N_SAMPLES, 2, generator=gen, dtype=torch.float64) @ chol.T
    model = gaussian_model("vp")
    res = sample(model, (N_SAMPLES, 2), "ddim", nfe=100, seed=0, x_init=x_init, t_start=0.5, eta=1.0,
                 dtype=torch.float64)
    assert_moments(res.x, MU, COV, B_MEAN, 0.06)
    assert not torch.allclose(res.x, x_init)  # it did move: a new draw, not the initialiser


def test_warm_start_arguments_are_checked() -> None:
    model = gaussian_model("vp")
    with pytest.raises(ValueError, match="both x_init and t_start"):
        sample(model, (2, 2), "ddim", nfe=3, x_init=torch.zeros(2, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="t_start must lie"):
        sample(model, (2, 2), "ddim", nfe=3, x_init=torch.zeros(2, 2, dtype=torch.float64), t_start=1.5)
