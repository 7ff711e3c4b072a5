"""Plug-and-play restoration with the prior's Tweedie denoiser (DPIR-style half-quadratic splitting).

DPIR (Zhang, Li, Zuo, Zhang, Van Gool & Timofte, TPAMI 2021, Alg. 1) alternates a denoiser and
an exact data step over a decreasing noise ladder ``sigma_1 > ... > sigma_K``:

    z_k = D(x_{k-1}, sigma_k)                                       (prior step)
    x_k = argmin_x ||A x - y||^2 / (2 sigma_n^2) + lam ||x - z_k||^2 / (2 sigma_k^2)   (data step)

Here ``D`` is the score model's own MMSE denoiser: Tweedie's ``x0`` prediction at the time ``t_k``
where the forward process's noise ``sigma_t / alpha_t`` equals ``sigma_k``, applied to
``alpha_t x`` (as :func:`~scorerecon.pipelines.tasks.natural.tweedie_denoise`). The data step is
the operator's closed-form or CG :meth:`prox_l2` (``gamma = sigma_k^2 / (lam sigma_n^2)``), or its
exact :meth:`project` onto ``{A x = y}`` for noise-free measurements. Each step sees the state
under one of the 8 flips / quarter turns, drawn from the element's own seeded stream (DPIR's
"periodical geometric self-ensemble", randomised), so every step averages the denoiser's
orientation bias away at 1 NFE and a slice's result never depends on its batch-mates.

Why this solver: the reverse SDE/DDIM solvers (DDRM, DiffPIR, DPS) draw *posterior samples*;
with the small CPU-trained priors here their texture costs PSNR (random inpainting ~3 dB below
biharmonic). PnP runs the same prior's denoiser as a deterministic MMSE-like estimator (no noise
is injected), which is what PSNR rewards. The ladder ``sigma_max -> sigma_min`` (model units,
the prior's ``[-1, 1]`` range) and ``lam`` were chosen on TRAINING crops (``benchmarks/natural.py
--tune-pnp``); the start is the operator's pseudo-inverse ``A^+ y`` (zero-filled pixels,
the minimum-norm upsampling, the truncated inverse filter), which ``sigma_max = 1`` covers, except where
:data:`PNP_WARM_STARTS` names a classical estimate to start from on a shorter ladder (inpainting:
biharmonic, ``sigma_max = 0.5``; a bicubic start for SR measured worse and is not used).
deepinv ships a DPIR, but only with its own pretrained DRUNet; wrapping our score model in it would
add a dependency for a 20-line loop, so the loop is written here.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from scorerecon.models.augment import dihedral
from scorerecon.models.sde import measurement_time
from scorerecon.pipelines.tasks import Problem, Reconstruction, sample_seeds

Tensor = torch.Tensor

#: DPIR's settings for the score priors, chosen on training crops (module docstring)
PNP_DEFAULTS: dict[str, float] = {"sigma_max": 1.0, "sigma_min": 0.01, "lam": 1.0}
#: Operators whose PnP starts from a classical estimate instead of ``A^+ y``: (baseline of
#: :mod:`scorerecon.modalities.natural.baselines`, ``sigma_max`` of the shorter ladder). Inpainting from
#: biharmonic at 0.5: on the training crops kodim02/07/15 (256^2, 40 steps) 31.07 dB vs 31.02 from the
#: zero-filled start at 1.0 (0.25: 31.04, 0.1: 30.76); docs/natural_images.md, 2026-12-06.
PNP_WARM_STARTS: dict[str, tuple[str, float]] = {"Inpainting": ("biharmonic", 0.5)}


def sigma_ladder(n: int, sigma_max: float, sigma_min: float) -> np.ndarray:
    """``n`` noise levels, geometric from ``sigma_max`` down to ``sigma_min`` (both included)."""
    if n < 1:
        raise ValueError(f"the PnP ladder needs at least one step, got {n}")
    if not 0 < sigma_min <= sigma_max:
        raise ValueError(f"need 0 < sigma_min <= sigma_max, got {sigma_min}, {sigma_max}")
    return np.geomspace(sigma_max, sigma_min, n) if n > 1 else np.array([sigma_min])


def pnp_restore(problem: Problem, model: Any, nfe: int = 20, seed: int = 0, device: torch.device | str = "cpu",
                n_samples: int = 1, engine: Any = None, init: Tensor | None = None, init_name: str = "init",
                **overrides: Any) -> Reconstruction:
    """DPIR with ``model``'s Tweedie denoiser on ``problem`` (``nfe`` denoiser calls = ladder steps).

    ``init`` (model space, the state's shape; recorded as ``init_name``) replaces the pseudo-inverse
    start, e.g. a classical estimate that a lower ``sigma_max`` then refines (:data:`PNP_WARM_STARTS`).

    ``overrides`` may set ``sigma_max``, ``sigma_min`` (floored at the measurement's noise) and
    ``lam`` (:data:`PNP_DEFAULTS`). ``n_samples > 1`` averages runs whose orientation draws differ
    (sample ``s`` of element ``i`` uses :func:`~scorerecon.pipelines.tasks.sample_seeds`).
    """
    from scorerecon.pipelines.tasks.batching import execution_record, prepare_engine

    unknown = set(overrides) - set(PNP_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown PnP setting(s) {sorted(unknown)}; expected {sorted(PNP_DEFAULTS)}")
    spec = {**PNP_DEFAULTS, **{k: float(v) for k, v in overrides.items()}}
    if spec["lam"] <= 0:
        raise ValueError(f"lam must be positive, got {spec['lam']}")
    sigma_n = float(problem.info.get("noise_std_model", 0.0))
    sigma_min = max(spec["sigma_min"], sigma_n)
    ladder = sigma_ladder(int(nfe), max(spec["sigma_max"], sigma_min), sigma_min)

    prior = prepare_engine(model, problem, device, engine)
    net, device = prior.net, prior.device
    sde = net.sde
    op, y = problem.operator, problem.y.to(device, torch.float32)
    times = torch.tensor([measurement_time(sde, float(s)) for s in ladder], dtype=torch.float32, device=device)
    alphas = sde.alpha(times).to(torch.float32)
    n_el = int(problem.shape[0])
    start = time.perf_counter()
    runs, seeds, calls = [], [], 0
    with torch.no_grad():
        for s in range(int(n_samples)):
            element_seeds = sample_seeds(problem, seed, s)
            draws = np.stack([np.random.default_rng(e).integers(0, 8, len(ladder)) for e in element_seeds])
            x = (op.A_dagger(y) if init is None else init.to(device)).to(torch.float32)
            for k, level in enumerate(ladder):
                t = times[k].expand(n_el)
                z = torch.empty_like(x)
                for turn in np.unique(draws[:, k]):  # elements sharing an orientation ride in one call
                    idx = torch.from_numpy(np.flatnonzero(draws[:, k] == turn)).to(device)
                    state = dihedral(alphas[k] * x[idx], int(turn))
                    z[idx] = dihedral(net.predict(state, t[: len(idx)]).x0, int(turn), inverse=True)
                    calls += 1
                if sigma_n > 0:
                    gamma = float(level) ** 2 / (spec["lam"] * sigma_n**2)
                    x = op.prox_l2(z, y, gamma).to(torch.float32)
                else:  # noise-free: the exact projection onto {A x = y}
                    x = op.project(z, y).to(torch.float32)
            runs.append(x)  # the estimate is the last data step's output (measured: >= the last z)
            seeds.append(element_seeds)
    seconds = time.perf_counter() - start
    stack = torch.stack(runs)
    mean = stack.mean(0)
    image = problem.to_physical(mean)
    std = problem.to_physical(stack).std(0) if n_samples > 1 else None
    samples = problem.to_physical(stack) if n_samples > 1 else None
    settings = {**spec, "sigma_min": sigma_min, "steps": len(ladder),
                "start": "pseudo_inverse" if init is None else init_name, "noise_std_model": sigma_n,
                "t_first": float(times[0]), "t_last": float(times[-1])}
    if not math.isfinite(float(mean.abs().max())):
        raise FloatingPointError("PnP diverged (non-finite state)")
    execution = execution_record(prior, "whole batch per run: one denoiser call per ladder step and orientation",
                                 n_el, calls)  # the network calls made (elements sharing a turn share one)
    return Reconstruction(mean, image, std, len(ladder), seconds, "pnp", settings, seeds, samples,
                          execution=execution)
