"""Natural-image restoration on the score core: zero-shot solvers on one prior, conditional models.

Zero-shot (one unconditional RGB prior, ``checkpoints/photos_prior``; every solver is
:func:`scorerecon.models.samplers.sample` plus one guidance object, via
:func:`scorerecon.pipelines.tasks.reconstruct`):

============ ====================================================================================
``dps``      diffusion posterior sampling (Chung et al., ICLR 2023): the core's
             :class:`~scorerecon.models.guidance.DPSGuidance`; the step is divided by
             ``||A||`` (the residual-normalised step moves ``x`` by about ``2 step ||A||``), so
             the bicubic operator (norm ~1/4) gets the same effective step as a blur or mask.
``ddrm``     DDRM (Kawar, Elad, Ermon & Song, NeurIPS 2022, Eq. 7-8) as a guidance hook,
             :class:`DDRMGuidance`: after each DDIM update the state's measured spectral
             components (``V^T x``, ``s > 0``) are replaced by DDRM's update from the
             measurement ``U^T y / s`` and the network's ``x0``; unmeasured components keep the
             DDIM update (DDRM's own rule for them, with the same ``eta``). Needs the operator's
             cheap SVD (:class:`~scorerecon.modalities.natural.degradations.SVDOperator`): blur
             (Fourier), bicubic (Kronecker of two small SVDs), inpainting mask, identity.
``prox``     DiffPIR (Zhu et al., CVPRW 2023): the core's exact proximal data step on ``x0_hat``
             (:class:`~scorerecon.models.guidance.ProximalDataStep`) with DiffPIR's
             ``rho_t = lam sigma_n^2 / (sigma_t / alpha_t)^2`` when the measurement is noisy;
             few steps (it is the solver that works at low NFE).
``tweedie``  denoising only, 1 NFE: the prior's ``x0`` prediction at the time ``t*`` where the
             forward process's noise ``sigma_t / alpha_t`` equals the measurement noise, applied
             to ``alpha_t* y`` -- Tweedie's formula, i.e. the prior's MMSE denoiser (a direct
             network call). ``tweedie_x8`` averages it over the 8 flips / rotations (8 NFE).
``tweedie_tta`` ``tweedie_x8`` on a copy of the prior first fine-tuned on the noisy photograph
             itself (R2R test-time adaptation, :func:`~scorerecon.models.adaptation.recorrupted_adaptation`;
             :data:`TWEEDIE_TTA_DEFAULTS`): 8 NFE plus 120 small training steps.
``sdedit``   denoising only: DDIM (``eta = 0``, no data term) from ``alpha_t* y`` at ``t*`` down
             to ``t = 0`` -- SDEdit (Meng et al., ICLR 2022) started where the measurement is.
``pnp``      DPIR-style plug-and-play (Zhang et al., TPAMI 2021): the prior's Tweedie denoiser
             and the exact data step alternated over a decreasing noise ladder, deterministic,
             from ``A^+ y`` (:mod:`scorerecon.pipelines.tasks.pnp`).
============ ====================================================================================

**Where the reverse process starts** (``start=`` of :func:`restore_zero_shot`):

* ``"prior"`` (default): ``t = 1``, a draw from the prior.
* ``"measurement"`` (denoising, ``A = I``, ``sigma > 0``): ``t*`` with ``sigma_t* / alpha_t* =
  sigma_y``, state ``alpha_t* y`` with *no added noise* -- ``y = x + sigma_y n`` already is a
  draw of ``x_t* / alpha_t*`` given ``x``, so DDRM / DiffPIR / DPS only run the ``n`` steps of
  ``linspace(t*, eps, n)`` (the sampler's own grid on ``[eps, t*]``). The core's warm start
  (``sample(x_init=, t_start=)``) always adds ``sigma_t0 z`` to ``alpha_t0 x_init``, which
  would double the noise of a noisy ``x_init``; until it takes the noise already in
  ``x_init``, the start is a view of the prior (:class:`MeasurementStart`) whose SDE ends at
  ``t*`` and whose network call at ``t*`` sees ``alpha_t* y``, run by the core's unchanged samplers.
* ``init=`` + ``t_start=``: the core's CCDF warm start (Chung, Sim & Ye, CVPR 2022) from an
  estimate on the image grid (e.g. a classical restoration), diffused to ``t_start``.

Conditional (SR3 / GSAD-style): :func:`restore_conditional` draws a few DDIM samples from a
model trained with the degraded image as ``cond`` channels (``checkpoints/photos_sr4``,
``checkpoints/photos_lowlight``) and returns their mean (a posterior-mean estimate).

Model space. The priors see ``m = 2 x - 1`` for RGB ``x`` in ``[0, 1]`` (their cards'
``data.normalization``); ``A x = y`` becomes ``A m = (y - b A 1) / a`` with ``x = a m + b``, the
noise std ``sigma / a``. Operators are used as they are (no rescaling), so their SVDs and closed
forms stay available.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from scorerecon.modalities.natural.degradations import Identity, SVDOperator
from scorerecon.models.augment import dihedral
from scorerecon.models.guidance import Guidance, GuidanceContext, LinearOperator, ProximalDataStep
from scorerecon.models.parametrization import Prediction
from scorerecon.models.samplers import sample
from scorerecon.models.sde import SDE, measurement_time
from scorerecon.pipelines.tasks import Problem, Reconstruction, SliceModel, affine_from_normalization
from scorerecon.pipelines.tasks import reconstruct as _reconstruct

Tensor = torch.Tensor

__all__ = [
    "NATURAL_SOLVERS",
    "NATURAL_SOLVER_DEFAULTS",
    "STARTS",
    "TWEEDIE_TTA_DEFAULTS",
    "DDRMGuidance",
    "MeasurementStart",
    "measurement_time",
    "natural_problem",
    "restore_conditional",
    "restore_zero_shot",
    "dihedral",
    "tweedie_denoise",
    "classical_estimate",
]

NATURAL_SOLVERS: tuple[str, ...] = ("tweedie", "tweedie_x8", "tweedie_tta", "sdedit", "ddrm", "prox", "dps", "pnp")
#: where the reverse process of ``ddrm`` / ``prox`` / ``dps`` starts (module docstring)
STARTS: tuple[str, ...] = ("prior", "measurement")

#: Natural-image solver settings, from a coordinate search on a TRAINING crop (kodim02, 64x64,
#: 20 NFE; ``benchmarks/natural.py --tune-solvers``; the log is in docs/natural_images.md).
#: DDRM ``eta`` (the paper's 0.85 was a grid point); DiffPIR ``lam`` for noisy measurements
#: (``rho_t = lam sigma_n^2 / sigma_t^2``; noise-free ones use the constant
#: :data:`NOISELESS_PROX_LAM`, near-hard consistency); DPS base step (divided by ``||A||``).
#: ``eta = 1`` (ancestral) won for DiffPIR everywhere and for DDRM except blur and denoising.
NATURAL_SOLVER_DEFAULTS: dict[str, dict[str, Any]] = {
    "ddrm": {"sampler": "ddim", "eta": 1.0, "eta_b": 1.0},
    "prox": {"sampler": "ddim", "eta": 1.0, "lam": 30.0},
    "dps": {"sampler": "ddim", "eta": 1.0, "step_size": 1.0},
}
NOISELESS_PROX_LAM = 1e-2
#: Per-operator changes to :data:`NATURAL_SOLVER_DEFAULTS` (same search). DPS diverges on the
#: bicubic and blur operators at 20 NFE for every base step in {0.25, ..., 3}; the smaller steps
#: here are the least bad of {0.02, 0.05, 0.1} (it needs >= 50 NFE there).
OPERATOR_SOLVER_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "BicubicDown": {"dps": {"step_size": 0.1}},
    "Blur": {"ddrm": {"eta": 0.85}, "dps": {"step_size": 0.05}},
    "Identity": {"ddrm": {"eta": 0.0}},
    "Inpainting": {},
}


def _b(v: Tensor, like: Tensor) -> Tensor:
    return v.reshape(-1, *([1] * (like.ndim - 1)))


class DDRMGuidance(Guidance):
    """DDRM's update of the measured spectral components, as an ``on_state`` hook on DDIM.

    With ``c = V^T (x / alpha)`` the variance-exploding form of the state at level
    ``sigma = sigma_s / alpha_s`` (the level the DDIM update just moved to), ``c0 = V^T x0_hat``
    from the network call at the previous level, ``ybar = U^T y / s`` and ``sy = sigma_y / s``:

    * ``s = 0``: ``c`` is kept (DDIM with ``eta`` is DDRM's rule for unseen components);
    * ``sigma < sy``: ``c0 + sqrt(1 - eta^2) sigma (ybar - c0) / sy + eta sigma z``;
    * ``sigma >= sy``: ``(1 - eta_b) c0 + eta_b ybar + sqrt(sigma^2 - eta_b^2 sy^2) z``;

    with ``z = V^T`` of white noise from the sampler's stream. On the final (noise-free) update
    ``sigma = 0`` gives ``c0`` for noisy and ``ybar`` for exact measurements.
    """

    def __init__(self, operator: SVDOperator, y: Tensor, noise_std: float = 0.0, eta: float = 0.85,
                 eta_b: float = 1.0) -> None:
        if not isinstance(operator, SVDOperator):
            raise ValueError("DDRM needs an operator with a cheap SVD (an SVDOperator)")
        self.operator, self.y, self.noise_std = operator, y, float(noise_std)
        self.eta, self.eta_b = float(eta), float(eta_b)
        self._ybar: Tensor | None = None

    def on_state(self, x: Tensor, ctx: GuidanceContext) -> Tensor:
        if ctx.stage != "predictor":
            return x
        op = self.operator
        alpha = _b(ctx.alpha, x)
        level = _b(ctx.sigma / ctx.alpha, x)
        c = op.Vt(x / alpha)
        c0 = op.Vt(ctx.pred.x0.detach())
        if self._ybar is None:
            self._ybar = op.spectral_measurement(self.y.to(x))
        s = op.singular_values(c0)
        z = op.Vt(ctx.randn(x))
        measured = s > 0
        sy = self.noise_std / torch.where(measured, s, torch.ones_like(s))
        weak = level < sy  # the measurement is noisier than the state: blend towards it
        b1 = c0 + ((1.0 - self.eta**2) ** 0.5) * level * (self._ybar - c0) / sy.clamp_min(1e-12) + self.eta * level * z
        b2 = ((1.0 - self.eta_b) * c0 + self.eta_b * self._ybar
              + torch.sqrt((level**2 - (self.eta_b * sy) ** 2).clamp_min(0.0)) * z)
        out = torch.where(measured, torch.where(weak, b1, b2), c)
        return alpha * op.V(out)


#: reflected context (pixels per side) the prior sees beyond a photo's edges (Problem.border_context):
#: without it the zero-padded UNet drew ringing rows at the crop edges that the SR projection keeps
#: (opencv ``stuff``: 32.8 dB -> 40.6 dB with 16 pixels); on the training crops kodim02/07/15
#: (benchmarks/natural.py --tune-context) 0/8/16/32 pixels are within 0.05 dB, so 16 fixes a failure
#: without tuning a score
NATURAL_BORDER_CONTEXT = 16


def natural_problem(y: Tensor, operator: LinearOperator, card: dict[str, Any], sigma: float = 0.0) -> Problem:
    """The linear problem ``y = A x + n`` (``x`` RGB in ``[0, 1]``, ``sigma`` on 0..255) in ``card``'s model space."""
    a, b = affine_from_normalization(card["data"]["normalization"])
    ones = torch.ones(1, *y.shape[1:2], *_image_shape(operator, y), dtype=y.dtype)
    y_model = (y - b * operator.A(ones)) / a
    noise_model = sigma / 255.0 / a
    shape = (y.shape[0], y.shape[1], *_image_shape(operator, y))
    smax = 1.0
    if isinstance(operator, SVDOperator):
        smax = float(operator.singular_values(torch.zeros(1)).max())
    defaults = {k: dict(v) for k, v in NATURAL_SOLVER_DEFAULTS.items()}
    if sigma <= 0:
        defaults["prox"]["lam"] = NOISELESS_PROX_LAM
    for solver, settings in OPERATOR_SOLVER_DEFAULTS.get(type(operator).__name__, {}).items():
        defaults[solver].update(settings)
    defaults["dps"]["step_size"] = defaults["dps"]["step_size"] / smax
    info = {"operator": type(operator).__name__, "noise_sigma_255": sigma, "noise_std_model": noise_model,
            "normalization": {"a": a, "b": b}, "operator_norm": smax, "ddrm": defaults.pop("ddrm")}
    return Problem(operator, y_model, shape, lambda m: a * m + b, info, solver_defaults=defaults,
                   from_physical=lambda x: (x - b) / a, border_context=NATURAL_BORDER_CONTEXT)


def _image_shape(operator: LinearOperator, y: Tensor) -> tuple[int, int]:
    shape = getattr(operator, "shape", None)
    return tuple(int(s) for s in shape) if shape is not None else tuple(y.shape[-2:])


class _EndsAt(SDE):
    """``base`` restricted to ``[eps, t_end]``: every marginal, drift, discretisation and the prior
    draw are ``base``'s, only ``T`` is ``t_end``, so the core's samplers run their own grid
    ``linspace(T, eps, n)`` from ``t_end``."""

    def __init__(self, base: SDE, t_end: float) -> None:
        super().__init__(base.N)
        self.base, self.t_end, self.eps = base, float(t_end), base.eps

    @property
    def T(self) -> float:
        return self.t_end

    def alpha(self, t: Tensor) -> Tensor:
        return self.base.alpha(t)

    def sigma(self, t: Tensor) -> Tensor:
        return self.base.sigma(t)

    def sde(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        return self.base.sde(x, t)

    def discretize(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        return self.base.discretize(x, t)

    def prior_std(self) -> float:
        return self.base.prior_std()

    def _params(self) -> dict:
        return {**self.base._params(), "t_end": self.t_end}


class MeasurementStart(SliceModel):
    """The prior seen from a noisy measurement ``y = x + sigma_y n`` (denoising): starts at ``alpha_t* y``.

    Its SDE ends at ``t*`` (``sigma_t* / alpha_t* = sigma_y``), so a core sampler integrates
    ``[eps, t*]`` only; the network call at ``t*`` -- the first, for the DDIM-based solvers --
    evaluates ``alpha_t* y`` instead of the sampler's initial draw (straight-through, so DPS's
    gradient still reaches the state), i.e. the reverse process starts from the measurement with
    no noise added. Every other call is ``model``'s own. A stand-in for a core warm start that
    accepts an initial state already carrying noise (module docstring).
    """

    def __init__(self, model: Any, y: Tensor, noise_std: float, context: int = 0) -> None:
        super().__init__(model.model if isinstance(model, SliceModel) else model, context=context)
        self.t_start = measurement_time(self.model.sde, noise_std)
        self.sde = _EndsAt(self.model.sde, self.t_start)
        self.y = y

    def predict(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Prediction:
        if float(t.reshape(-1)[0]) >= self.t_start * (1.0 - 1e-6):
            alpha = float(self.model.sde.alpha(torch.tensor([self.t_start], dtype=torch.float64)))
            x = x - x.detach() + alpha * self.y.to(x).expand_as(x)
        return super().predict(x, t, cond)


#: ``tweedie_tta``'s test-time adaptation (:func:`~scorerecon.models.adaptation.recorrupted_adaptation`),
#: chosen on tuning crops outside the held-out set (kodim02/07/10/15/20, 256^2, sigma 25; ``benchmarks/natural.py
#: --tune-tta``, docs/natural_images.md, 2026-12-06):
#: every parameter, 120 Adam steps at 1e-4 on 4 patches of 128^2, R2R's a = 0.5.
TWEEDIE_TTA_DEFAULTS: dict[str, Any] = {"adapter": "full", "steps": 120, "lr": 1e-4, "recorruption": 0.5,
                                        "patch": 128, "batch": 4}


def tweedie_denoise(problem: Problem, model: Any, device: torch.device | str = "cpu", ensemble: int = 1,
                    engine: Any = None, adaptation: dict[str, Any] | None = None,
                    seed: int = 0) -> Reconstruction:
    """MMSE denoising (identity operator only): ``x0_hat(alpha_t y, t)`` with ``sigma_t / alpha_t = sigma_y``.

    One NFE; ``ensemble = 8`` averages the estimates over the 8 flips / rotations of the input
    (the test-time "self-ensemble" of Timofte, Rothe & Van Gool, CVPR 2016; the prior was trained
    with the same augmentation), at 8 NFE. ``adaptation`` (options of
    :func:`~scorerecon.models.adaptation.recorrupted_adaptation`, e.g. :data:`TWEEDIE_TTA_DEFAULTS`)
    first fine-tunes a copy of the prior on the measurement itself (R2R, self-supervised; one
    adapted copy for the whole batch, on the engine's device; ``seed`` draws its patches and noise).
    """
    if ensemble not in (1, 8):
        raise ValueError("ensemble must be 1 or 8")
    if not isinstance(problem.operator, Identity):
        raise ValueError(f"Tweedie denoising needs the identity operator, got {problem.info.get('operator')}")
    sigma_y = float(problem.info["noise_std_model"])
    if sigma_y <= 0:
        raise ValueError("Tweedie denoising needs a noisy measurement (sigma > 0)")
    from scorerecon.pipelines.tasks.batching import execution_record, prepare_engine

    prior = prepare_engine(model, problem, device, engine)  # the prior as the tile engine runs it
    adapted_record = None
    if adaptation is not None:
        from scorerecon.models.adaptation import recorrupted_adaptation
        from scorerecon.pipelines.tasks import downsampling_factor

        y_fit = problem.y.to(prior.device, torch.float32)
        if problem.channels_as_batch and y_fit.shape[1] > 1:
            y_fit = y_fit.reshape(-1, 1, *y_fit.shape[2:])
        adapted, adapted_record = recorrupted_adaptation(prior.raw, y_fit, sigma_y, seed=seed,
                                                         multiple=downsampling_factor(prior.raw),
                                                         **{**TWEEDIE_TTA_DEFAULTS, **adaptation})
        prior = prepare_engine(adapted, problem, device, engine)
    wrapped, device = prior.net, prior.device
    sde = wrapped.sde
    t = torch.full((problem.shape[0],), measurement_time(sde, sigma_y), dtype=torch.float32, device=device)
    start = time.perf_counter()
    with torch.no_grad():
        x_t = _b(sde.alpha(t), problem.y) * problem.y.to(device, torch.float32)
        x0 = torch.stack([dihedral(wrapped.predict(dihedral(x_t, k), t).x0, k, inverse=True)
                          for k in range(ensemble)]).mean(0)
    seconds = time.perf_counter() - start
    spec: dict[str, Any] = {"t": float(t[0]), "sigma_model": sigma_y, "ensemble": ensemble}
    if adapted_record is not None:
        spec["adaptation"] = adapted_record
        seconds += adapted_record["seconds"]
    return Reconstruction(x0, problem.to_physical(x0), None, ensemble, seconds,
                          "tweedie" if adapted_record is None else "tweedie_tta", spec, [],
                          execution=execution_record(prior, "whole batch: one denoiser call per orientation",
                                                     int(problem.shape[0]), ensemble))


def classical_estimate(problem: Problem, baseline: str) -> Tensor:
    """The classical ``baseline`` (:mod:`scorerecon.modalities.natural.baselines`) of every photo of an
    inpainting ``problem``, in model space: a warm start for :func:`~scorerecon.pipelines.tasks.pnp.pnp_restore`."""
    import numpy as np

    from scorerecon.modalities.natural.baselines import run_baseline

    y = problem.to_physical(problem.y).float()
    mask = problem.operator.mask.to(y).expand_as(y)  # 1 = observed
    out = []
    for k in range(y.shape[0]):
        ctx = {"mask": mask[k, 0].cpu().numpy()}
        est = run_baseline(baseline, y[k].permute(1, 2, 0).cpu().numpy().astype(np.float64), ctx)
        out.append(torch.from_numpy(np.ascontiguousarray(est.transpose(2, 0, 1))).float())
    return problem.from_physical(torch.stack(out))


def restore_zero_shot(problem: Problem, model: Any, solver: str, nfe: int = 20, seed: int = 0,
                      device: torch.device | str = "cpu", n_samples: int = 1, start: str = "prior",
                      init: Tensor | None = None, t_start: float | None = None, engine: Any = None,
                      **overrides: Any) -> Reconstruction:
    """Run one of :data:`NATURAL_SOLVERS` on ``problem`` under the unconditional ``model``.

    ``n_samples > 1`` returns the mean of that many posterior samples (one noise stream per image
    and sample, :func:`~scorerecon.pipelines.tasks.sample_seeds`; ``nfe`` per sample): a
    Monte-Carlo posterior mean, which PSNR rewards over one sample.
    ``start`` (:data:`STARTS`) or ``init`` + ``t_start`` choose where the reverse process starts
    (module docstring); ``sdedit`` always starts at the measurement. The returned ``spec`` records
    the start and its time. ``engine``: the tile engine's options
    (:class:`~scorerecon.pipelines.engine.EngineConfig`), as for every task.
    """
    if solver in ("tweedie", "tweedie_x8"):
        return tweedie_denoise(problem, model, device, ensemble=8 if solver == "tweedie_x8" else 1, engine=engine)
    if solver == "tweedie_tta":
        return tweedie_denoise(problem, model, device, ensemble=8, engine=engine, adaptation=overrides, seed=seed)
    if solver == "pnp":  # deterministic plug-and-play with the prior's denoiser: no start, no sampler
        if init is not None or start != "prior":
            raise ValueError("pnp starts from A^+ y or its operator's classical warm start; it takes no start or init")
        from scorerecon.pipelines.tasks.pnp import PNP_WARM_STARTS, pnp_restore

        warm_start = PNP_WARM_STARTS.get(type(problem.operator).__name__)
        if warm_start is not None and "sigma_max" not in overrides:
            baseline, sigma_max = warm_start
            return pnp_restore(problem, model, nfe=nfe, seed=seed, device=device, n_samples=n_samples, engine=engine,
                               init=classical_estimate(problem, baseline), init_name=baseline, sigma_max=sigma_max,
                               **overrides)
        return pnp_restore(problem, model, nfe=nfe, seed=seed, device=device, n_samples=n_samples, engine=engine,
                           **overrides)
    if solver not in NATURAL_SOLVERS:
        raise ValueError(f"unknown natural-image solver {solver!r}; expected one of {list(NATURAL_SOLVERS)}")
    if start not in STARTS:
        raise ValueError(f"start must be one of {list(STARTS)}, got {start!r}")
    sigma_y = float(problem.info.get("noise_std_model", 0.0))
    warm: dict[str, Any] = {"init": init, "t_start": t_start} if init is not None else {}
    net = model
    if solver == "sdedit" or start == "measurement":
        if not (isinstance(problem.operator, Identity) and sigma_y > 0):
            raise ValueError("the measurement-level start is for denoising (identity operator, sigma > 0); this "
                             f"problem is {problem.info.get('operator')}, sigma {problem.info.get('noise_sigma_255')}")
        if init is not None:
            raise ValueError("choose one start: the measurement or init + t_start")
        net = MeasurementStart(model, problem.y, sigma_y, problem.border_context)
        start_info = {"start": "measurement", "t_start": net.t_start}
    else:
        start_info = {"start": "init" if init is not None else "prior", "t_start": t_start if init is not None else 1.0}
    if solver == "sdedit":
        eta = float(overrides.pop("eta", 0.0))
        rec = _reconstruct(problem, net, "dc", nfe=nfe, seed=seed, device=device, engine=engine, eta=eta,
                           n_samples=n_samples, guidance=lambda op, y: Guidance())
        rec.solver, rec.spec = "sdedit", {"sampler": "ddim", "eta": eta}
    elif solver == "ddrm":
        spec = {**problem.info.get("ddrm", NATURAL_SOLVER_DEFAULTS["ddrm"]), **overrides}
        rec = _reconstruct(problem, net, "dc", nfe=nfe, seed=seed, device=device, engine=engine, eta=spec["eta"],
                           n_samples=n_samples, **warm,
                           guidance=lambda op, y: DDRMGuidance(op, y, sigma_y, spec["eta"], spec["eta_b"]))
        rec.solver, rec.spec = "ddrm", spec
    elif solver == "prox":
        lam = overrides.pop("lam", problem.spec("prox")["lam"])
        if sigma_y > 0:  # DiffPIR's noise-aware rho_t
            rec = _reconstruct(problem, net, "prox", nfe=nfe, seed=seed, device=device, engine=engine, lam=lam,
                               n_samples=n_samples, **warm, **overrides,
                               guidance=lambda op, y: ProximalDataStep(op, y, lam=lam, noise_std=sigma_y))
        else:
            rec = _reconstruct(problem, net, "prox", nfe=nfe, seed=seed, device=device, engine=engine, lam=lam,
                               n_samples=n_samples, **warm, **overrides)
    else:
        rec = _reconstruct(problem, net, "dps", nfe=nfe, seed=seed, device=device, engine=engine,
                           n_samples=n_samples, **warm, **overrides)
    rec.spec = {**rec.spec, **start_info}
    return rec


def restore_conditional(model: Any, cond: Tensor, nfe: int = 10, seed: int = 0, n_samples: int = 4,
                        eta: float = 0.0, device: torch.device | str = "cpu",
                        engine: Any = None) -> tuple[Tensor, int, float]:
    """Mean of ``n_samples`` DDIM samples of a conditional model given ``cond`` (RGB in ``[0, 1]``).

    Returns ``(image in [0, 1] scale (B, 3, H, W), NFE per sample, seconds)``; the samples ride in
    one batch with per-sample seeds ``seed + k``, the prior as the tile engine prepares it (``engine``:
    its :class:`~scorerecon.pipelines.engine.EngineConfig`; precision, compile).
    """
    from dataclasses import replace

    from scorerecon.pipelines.engine import EngineConfig, TileEngine

    prepared = TileEngine(model, replace(engine or EngineConfig(), device=device))
    device = prepared.device
    a, b = affine_from_normalization(model.card["data"]["normalization"])
    bsz = cond.shape[0]
    cond_m = ((cond - b) / a).float().repeat(n_samples, 1, 1, 1).to(device)
    wrapped = SliceModel(prepared.model, multiple=1)
    mult = (2 ** (len(model.card["network"]["channels"]) - 1))
    if any(s % mult for s in cond.shape[-2:]):
        raise ValueError(f"conditional sampling needs image sides divisible by {mult}, got {tuple(cond.shape[-2:])}")
    res = sample(wrapped, tuple(cond_m.shape), sampler="ddim", nfe=nfe, seed=[seed + k for k in range(len(cond_m))],
                 device=device, cond=cond_m, eta=eta)
    x = (a * res.x + b).reshape(n_samples, bsz, *cond.shape[1:]).mean(0)
    return x.cpu(), res.nfe, res.seconds
