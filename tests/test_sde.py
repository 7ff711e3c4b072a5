"""The forward SDEs: Monte-Carlo marginals match ``marginal_prob``, discretisations, prior.

Tolerances are ``6`` standard errors of the Monte-Carlo estimate plus a stated discretisation
allowance: the forward SDE is simulated by Euler-Maruyama with ``dt = 1e-3``, whose weak error on
these linear SDEs is ``O(dt * max rate)`` = ``1e-3 * beta_max / 2 = 1 %`` at worst (VP at
``t = 1``), so we allow 1 % of the exact value on top of the sampling error.
"""

from __future__ import annotations

import math

import pytest
import torch

from scorerecon.models.sde import SDES, VESDE, VPSDE, SubVPSDE, sde_from_config

torch.set_num_threads(1)

N_PATHS = 10_000
N_STEPS = 1_000
CHECK_TIMES = (0.05, 0.3, 1.0)
N_SE = 6.0
DISC = 0.01  # relative Euler-Maruyama allowance (see module docstring)


@pytest.mark.parametrize("name", sorted(SDES))
def test_monte_carlo_marginals_match_marginal_prob(name: str) -> None:
    """Simulate ``dx = f dt + g dw`` from a fixed ``x0`` and compare mean / std at a few ``t``.

    ``x(0)`` is drawn from the kernel at ``t = 0`` (``N(alpha_0 x0, sigma_0^2)``; ``sigma_0 =
    sigma_min`` for VE, whose kernel is defined relative to ``sigma_min``, 0 otherwise).
    """
    sde = SDES[name]()
    g = torch.Generator().manual_seed(1234)
    dtype = torch.float64
    x0 = torch.full((N_PATHS, 1), 1.5, dtype=dtype)
    x = sde.perturb(x0, torch.zeros(N_PATHS, dtype=dtype), torch.randn(N_PATHS, 1, generator=g, dtype=dtype))
    dt = 1.0 / N_STEPS
    checks = {round(t * N_STEPS): t for t in CHECK_TIMES}
    seen = 0
    for i in range(N_STEPS):
        t = torch.full((N_PATHS,), i * dt, dtype=dtype)
        f, diff = sde.sde(x, t)
        x = x + f * dt + diff[:, None] * math.sqrt(dt) * torch.randn(N_PATHS, 1, generator=g, dtype=dtype)
        if i + 1 in checks:
            seen += 1
            tt = torch.tensor([checks[i + 1]], dtype=dtype)
            mean, std = sde.marginal_prob(x0[:1], tt)
            mean, std = mean.item(), std.item()
            se_mean, se_std = std / math.sqrt(N_PATHS), std / math.sqrt(2 * N_PATHS)
            assert abs(x.mean().item() - mean) <= N_SE * se_mean + DISC * abs(mean), (checks[i + 1], x.mean(), mean)
            assert abs(x.std().item() - std) <= N_SE * se_std + DISC * std, (checks[i + 1], x.std(), std)
    assert seen == len(CHECK_TIMES)


def test_vp_discretisation_is_ddpm() -> None:
    """``VPSDE.discretize`` is DDPM's ``x_i = sqrt(1 - beta_i) x_{i-1} + sqrt(beta_i) z``, and the
    product of its ``1 - beta_i`` approaches ``alpha(1)^2`` as ``N`` grows."""
    sde = VPSDE(N=1000)
    betas = sde.discrete_betas().double()
    x = torch.randn(5, 3, dtype=torch.float64)
    for i in (0, 17, 999):
        t = torch.full((5,), i / 999, dtype=torch.float64)
        f, G = sde.discretize(x, t)
        torch.testing.assert_close(x + f, torch.sqrt(1 - betas[i]) * x)
        torch.testing.assert_close(G, torch.full((5,), betas[i].item(), dtype=torch.float64).sqrt())
    # prod(1 - beta_i) = exp(-sum beta_i - sum beta_i^2 / 2 - ...): first-order convergence in 1/N
    alpha1_sq = sde.alpha(torch.tensor([1.0], dtype=torch.float64)).item() ** 2
    errors = [abs(torch.prod(1 - VPSDE(N=n).discrete_betas().double()).item() / alpha1_sq - 1)
              for n in (1000, 10_000)]
    assert errors[0] < 0.1 and errors[1] < errors[0] / 5


def test_ve_discretisation_is_smld_ladder() -> None:
    """``G_i^2 = sigma_i^2 - sigma_{i-1}^2`` on the geometric ladder; the increments sum to
    ``sigma_max^2`` (``sigma_{-1} = 0``)."""
    sde = VESDE(N=50)
    x = torch.zeros(1, 2, dtype=torch.float64)
    total = sum(sde.discretize(x, torch.tensor([i / 49], dtype=torch.float64))[1].item() ** 2 for i in range(50))
    assert total == pytest.approx(sde.sigma_max**2, rel=1e-5)  # float32 ladder


@pytest.mark.parametrize("name", sorted(SDES))
def test_prior_logp_and_config_roundtrip(name: str) -> None:
    sde = SDES[name](N=123)
    z = torch.randn(4, 3, 2, dtype=torch.float64) * sde.prior_std()
    ref = torch.distributions.Normal(0.0, sde.prior_std()).log_prob(z).flatten(1).sum(1)
    torch.testing.assert_close(sde.prior_logp(z), ref)
    back = sde_from_config(sde.config())
    assert type(back) is type(sde) and back.config() == sde.config()
    t = torch.linspace(0.01, 1, 7, dtype=torch.float64)
    torch.testing.assert_close(back.sigma(t), sde.sigma(t))


def test_subvp_variance_below_vp() -> None:
    t = torch.linspace(1e-3, 1, 50, dtype=torch.float64)
    assert torch.all(SubVPSDE().sigma(t) <= VPSDE().sigma(t))
