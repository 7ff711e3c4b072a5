"""Reconstruction tasks: a forward operator + a score prior + a solver, on the score core's hooks.

A *task* turns measurements into images with a trained prior and never owns a sampler: every
solver here is :func:`scorerecon.models.samplers.sample` plus one
:mod:`~scorerecon.models.guidance` object. The modality modules (:mod:`.mri`, :mod:`.ct`) build a
:class:`Problem` -- an operator that acts on the *model's* state, the measurement expressed in
the same space, and the map back to physical units -- and :func:`reconstruct` runs a solver on it.
:mod:`.volume` adds the 3-D variants (TV along z by ADMM, a 3-D patch prior) and posterior
sampling for uncertainty.

Solvers (:data:`SOLVERS`; all spend at most ``nfe`` network evaluations, 50 or fewer by default):

============== ===============================================================================
``dc``         hard data consistency on the sampler state: after every update the state is
               merged with the measurement noised to the state's level and projected with
               ``lambda = 1`` (Song, Shen, Xing & Ermon, ICLR 2022, "Solving inverse problems in
               medical imaging with score-based generative models"; for Cartesian MRI this is
               score-MRI's k-space replacement, Chung & Ye, MedIA 2022). Sampler: DDIM with
               ``eta = 1`` (DDPM's posterior on an ``nfe``-step subset).
``projection`` the same merge with ``lambda < 1`` (Song 2022, Eq. 9): a convex blend of the
               projected and the unprojected state, robust to measurement noise.
``dps``        diffusion posterior sampling (Chung, Kim, Mccann, Klasky & Ye, ICLR 2023): a step
               down the gradient of ``||y - A x0_hat(x_t)||`` through the network after every
               update; same sampler as ``dc``.
``dds``        decomposed diffusion sampling (Chung, Lee & Ye, ICLR 2024): DDIM whose ``x0_hat``
               is corrected by a few conjugate-gradient steps on ``||A x - y||^2 + lam ||x -
               x0_hat||^2`` before the DDIM update (the network's ``eps`` is kept).
``prox``       an exact proximal data step on ``x0_hat`` (DiffPIR, Zhu et al., CVPRW 2023): the
               same objective solved to convergence (closed form or CG), inside DDIM.
``dds_tta``    ``dds`` with test-time adaptation (Barbano et al. 2023; DDIP, Chung & Ye, ECCV
               2024): a LoRA adapter of the prior, shared by the batch's slices, takes one Adam
               step on ``||A x0_hat - y||^2`` after every update
               (:mod:`scorerecon.models.adaptation`; one backward pass per step, no extra NFE).
============== ===============================================================================

Model space. Priors see images normalised to their training range (``[-1, 1]``) and operators
act on physical units. Since ``x_phys = a m + b`` (the model card's normalisation) is affine and
``A`` linear, ``A x_phys = y`` is equivalent to ``c A E m = c (y - b A E 1) / a``: a linear problem
in the model state ``m`` with a shifted, scaled measurement. ``E`` embeds the model's channels
into the operator's layout (e.g. a real image into the (re, im) channel pair of the MRI
operators) and ``c`` normalises the operator to unit norm, so one DPS step size and one CG
weight serve every modality. :class:`ModelSpaceOperator` is that ``c A E``.

Whole slices. The networks are fully convolutional (MONAI's UNet: convolutions and one
self-attention middle block, which takes any token count), trained on patches; they are applied
to whole slices, reflect-padded to a multiple of the UNet's downsampling factor by
:class:`SliceModel`, which also can fold channels into the batch (score-MRI's treatment of real
and imaginary parts as two images under one magnitude-trained prior).

Batching: :func:`run_sampler` is the one call into the sampler; :func:`reconstruct` runs it inside
the tile engine (:mod:`.batching`): slices and posterior samples in planned batches, the network
under the device's precision policy (and ``torch.compile`` when asked).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as nnf

from scorerecon.models.adaptation import TestTimeAdaptation
from scorerecon.models.guidance import (
    ConjugateGradientDataStep,
    DPSGuidance,
    Guidance,
    LinearOperator,
    MeasurementProjection,
    ProximalDataStep,
)
from scorerecon.models.parametrization import Prediction
from scorerecon.models.rng import derive_seed
from scorerecon.models.samplers import SampleResult, sample

Tensor = torch.Tensor

__all__ = [
    "DEFAULT_SOLVERS",
    "SOLVERS",
    "ModelSpaceOperator",
    "Problem",
    "Reconstruction",
    "SliceModel",
    "affine_from_normalization",
    "downsampling_factor",
    "intensity_mode",
    "WARM_START",
    "WARM_T0",
    "make_guidance",
    "reconstruct",
    "run_sampler",
    "sample_seeds",
    "solver_spec",
]

SOLVERS: tuple[str, ...] = ("dc", "projection", "dps", "dds", "prox", "dds_tta")

#: Per-solver sampler and guidance settings, never tuned on evaluation slices. Literature defaults
#: except the DPS step: DDS 5 CG steps (as the paper); ``eta = 0.85`` for the DDIM-based
#: data-step solvers (on the training slice below, 0.15 gave 22.3 dB vs 23.3 dB); Song 2022's
#: ``lambda`` in (0, 1) for ``projection``. DPS (residual-normalised, on a unit-norm operator,
#: :class:`ModelSpaceOperator`): the paper's step ~1 assumes ~1000 steps; at 30 NFE the grid
#: {0.05, 0.2, 0.5, 1, 2} on Colin27 TRAINING slice z=60 (96x96 crop, R=4 random-1D, brain_ddpm)
#: gave 11.1 / 15.0 / 18.4 / 21.4 / 23.4 dB, so 2.0. DPS needs enough steps: at 12 NFE it
#: diverges on brain_ddpm for every step in {0.5, 1, 2} (the gradient through a small network at
#: high noise is amplified by ~1/alpha_t); from 20 NFE on it is stable.
DEFAULT_SOLVERS: dict[str, dict[str, Any]] = {
    "dc": {"sampler": "ddim", "eta": 1.0, "lam": 1.0},
    "projection": {"sampler": "ddim", "eta": 1.0, "lam": 0.8},
    "dps": {"sampler": "ddim", "eta": 1.0, "step_size": 2.0},
    # tv_xy > 0: the same anchored CG step with in-plane TV added (ADMM, .tv_admm.TVxyADMM)
    "dds": {"sampler": "ddim", "eta": 0.85, "cg_iter": 5, "lam": 1e-2, "tv_xy": 0.0},
    "prox": {"sampler": "ddim", "eta": 0.85, "lam": 1e-2},
    # LoRA rank 4, Adam 1e-3 (DDIP's kind of adapter): on Colin27 TRAINING slices z = 60, 120 no adapter or rate
    # beat plain dds and LoRA 3e-4..3e-3 / norm 1e-3 were within 0.09 dB (benchmarks/adaptation.py, docs/medical.md)
    "dds_tta": {"sampler": "ddim", "eta": 0.85, "cg_iter": 5, "lam": 1e-2, "adapter": "lora", "rank": 4,
                "lr": 1e-3, "every": 1},
}


#: The warm start (CCDF) evaluate and reconstruct use unless told otherwise, per modality: a
#: baseline's name, or "none" = from noise. Measured 2026-12-04 (docs/medical.md, "Unseen subjects"):
#: on TRAINING slices warm from TV beat cold everywhere (t0 = 0.1, the best of {0.1, 0.2, 0.3, 0.5}),
#: but on unseen subjects cold was as good or better (mean of 4 unseen MR subjects, DDS mean of 4:
#: R=4 25.71 cold vs 25.63 warm, R=8 21.08 vs 20.96; 3 unseen CT patients: 23 views 27.73 vs 27.60,
#: 8 views 21.80 vs 22.06), so the default stayed cold. With in-plane TV in the DDS step (``TV_XY``,
#: 2026-12-05, docs/medical.md) warm beat cold on the CT mean at both view counts (23 views 29.76 vs 29.45,
#: 8 views 23.67 vs 23.38) and on the training scan, so CT now starts warm from TV; ``--warm-start none``
#: starts from noise.
WARM_START: dict[str, str] = {"mri": "none", "ct": "tv"}
WARM_T0 = 0.1

#: The in-plane TV weight of the DDS data step (solver setting ``tv_xy``, :class:`~.tv_admm.TVxyADMM`)
#: evaluate and reconstruct use unless told otherwise (``--tv-xy``), per modality; 0 = the plain DDS step.
#: CT 0.002: chosen on TRAINING slices of the prior's scan (z = 30, 75; best mean PSNR over 23 and 8 views
#: of {0.001, 0.002, 0.003}, `benchmarks/ct.py --parts tvxy`); on 3 unseen patients it lifted DDS from
#: +1.09 to +2.81 dB over TV at 23 views and from -0.37 to +1.21 dB at 8 views (cold, mean of 4 x 30 NFE).
#: MRI 0.004: chosen the same way on Colin27 TRAINING slices (z = 60, 120, R = 4 and 8, of {0.002, 0.004,
#: 0.008}); on 4 unseen subjects (8 x 15 NFE, cold) R=4 +1.66 -> +1.91 dB and R=8 +0.98 -> +1.16 dB over the
#: best classical; on the real twix phantom (noise-aware anchor) R=3 22.37 -> 23.14, R=4 19.19 -> 19.70 dB.
TV_XY: dict[str, float] = {"mri": 0.004, "ct": 0.002}
#: the solvers that take ``tv_xy``
TV_XY_SOLVERS: tuple[str, ...] = ("dds",)


def solver_spec(name: str, **overrides: Any) -> dict[str, Any]:
    """The settings of solver ``name`` (:data:`DEFAULT_SOLVERS`) with ``overrides`` applied."""
    if name not in DEFAULT_SOLVERS:
        raise ValueError(f"unknown solver {name!r}; expected one of {list(SOLVERS)}")
    spec = dict(DEFAULT_SOLVERS[name])
    unknown = set(overrides) - set(spec)
    if unknown:
        raise ValueError(f"solver {name!r} has no option(s) {sorted(unknown)}; it has {sorted(spec)}")
    spec.update(overrides)
    return spec


# --------------------------------------------------------------------------------------------
# model space
# --------------------------------------------------------------------------------------------
def affine_from_normalization(normalization: dict[str, Any]) -> tuple[float, float]:
    """``(a, b)`` with ``x_data = a m + b`` for a model card's resolved ``data.normalization``."""
    (lo, hi), (ra, rb) = normalization["values"], normalization["range"]
    a = (float(hi) - float(lo)) / (float(rb) - float(ra))
    return a, float(lo) - float(ra) * a


def intensity_mode(normalization: dict[str, Any]) -> str:
    """How inputs are mapped to a prior's range, decided from its card's ``data.normalization``.

    THE one rule (issue 15): ``"card"`` -- the card's fixed window -- only where the training
    units are physical and shared by every scanner (``method: fixed``, e.g. CT in HU);
    ``"auto"`` -- a per-input normalisation mirroring the training one -- for everything else
    (MRI, photographs: ``percentile``/``minmax`` values are the training volume's own units,
    which another scanner or subject does not share; mapping its input with them put another
    scanner's MRI ~5x outside the prior's range).
    """
    return "card" if str(normalization.get("method", "")).lower() == "fixed" else "auto"


class ModelSpaceOperator(LinearOperator):
    """``c A E``: a physical operator seen from the model's state.

    ``embed`` (``E``) maps a model-space tensor into ``A``'s input layout and ``embed_adjoint``
    is its adjoint (both linear; identity when ``None``); ``scale`` (``c``) is a positive constant,
    typically ``1 / ||A||``. ``dagger_iter`` bounds the CG iterations of :meth:`A_dagger` (used by
    the ``dc``/``projection`` solvers at every step) and :meth:`prox_l2`; their tolerance defaults
    to the working precision (``1e-5`` relative in float32). With no embedding and ``c = 1`` prefer the
    physical operator itself (it may have closed forms).
    """

    def __init__(self, operator: LinearOperator, embed: Callable[[Tensor], Tensor] | None = None,
                 embed_adjoint: Callable[[Tensor], Tensor] | None = None, scale: float = 1.0,
                 dagger_iter: int = 100) -> None:
        self.operator, self.scale, self.dagger_iter = operator, float(scale), int(dagger_iter)
        self._E = embed or (lambda x: x)
        self._EH = embed_adjoint or (lambda x: x)

    def A(self, x: Tensor) -> Tensor:
        return self.scale * self.operator.A(self._E(x))

    def AH(self, y: Tensor) -> Tensor:
        return self.scale * self._EH(self.operator.AH(y))

    def normal(self, x: Tensor) -> Tensor:
        return (self.scale * self.scale) * self._EH(self.operator.normal(self._E(x)))

    def A_dagger(self, y: Tensor, n_iter: int | None = None, tol: float | None = None) -> Tensor:
        return super().A_dagger(y, self.dagger_iter if n_iter is None else n_iter, self._tol(y) if tol is None else tol)

    def prox_l2(self, z: Tensor, y: Tensor, gamma: float | Tensor, n_iter: int | None = None,
                tol: float | None = None) -> Tensor:
        return super().prox_l2(z, y, gamma, self.dagger_iter if n_iter is None else n_iter,
                               self._tol(z) if tol is None else tol)

    @staticmethod
    def _tol(like: Tensor) -> float:
        # CG on the semi-definite normal equations must stop at the working precision: iterating
        # on rounding noise lets it grow without bound in the null space of A (float32: 1e-7 is
        # below eps * cond, so the default tolerance of LinearOperator would never stop)
        return 1e-5 if like.dtype in (torch.float32, torch.complex64) else 1e-10


@dataclass
class Problem:
    """A linear inverse problem in the model's space, for a batch of slices.

    ``operator`` acts on model states shaped ``shape``; ``y`` is the model-space measurement;
    ``to_physical`` maps a model state to the physical image (complex for MRI, HU for CT);
    ``from_physical`` is its inverse on the images the state can represent (a classical
    reconstruction -> the warm start's initial state), ``None`` where there is none;
    ``info`` is JSON-able provenance (scaling, mask or geometry, complex handling).
    """

    operator: LinearOperator
    y: Tensor
    shape: tuple[int, ...]
    to_physical: Callable[[Tensor], Tensor]
    info: dict[str, Any] = field(default_factory=dict)
    channels_as_batch: bool = False
    #: modality-specific solver defaults, applied before the caller's overrides
    solver_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    from_physical: Callable[[Tensor], Tensor] | None = None
    #: what names each batch element's random stream (:func:`sample_seeds`): e.g. the input
    #: store's z index of every slice; ``None``: its position in the batch
    slice_ids: list[int] | None = None
    #: the same problem for a subset of its batch elements (indices may repeat: posterior samples
    #: of one slice side by side), every batch-level decision -- intensity scale, phase model --
    #: kept as the whole problem made it; ``None``: the batch only runs whole. What lets the tile
    #: engine cut a volume's slices and samples into planned batches (:mod:`.batching`).
    select: Callable[[list[int]], Problem] | None = None
    #: pixels of reflected context the network sees beyond every image edge (:class:`SliceModel`):
    #: a photograph is cut from a larger scene, and a zero-padded UNet invents structure at the
    #: cut (measured: ringing rows at a 256^2 crop's edges under ``photos_prior``); 0 where the
    #: image edge is background (MRI, CT)
    border_context: int = 0

    def spec(self, solver: str, **overrides: Any) -> dict[str, Any]:
        """The settings ``solver`` runs with on this problem."""
        return solver_spec(solver, **{**self.solver_defaults.get(solver, {}), **overrides})

    def residual(self, m: Tensor) -> Tensor:
        """Relative data misfit ``||A m - y|| / ||y||`` per sample."""
        r = (self.operator.A(m) - self.y.to(m)).flatten(1).norm(dim=1)
        return r / self.y.flatten(1).norm(dim=1).clamp_min(1e-12)


# --------------------------------------------------------------------------------------------
# the prior on whole slices
# --------------------------------------------------------------------------------------------
def downsampling_factor(model: Any) -> int:
    """``2^(levels - 1)`` of a UNet checkpoint (its card's ``network.channels``); 1 otherwise."""
    net = getattr(model, "card", {}).get("network", {})
    if net.get("kind") != "unet":
        return 1
    return 2 ** (len(net.get("channels", [0])) - 1)


class SliceModel:
    """A score model applied to whole images of any size (a :class:`ScoreModel`).

    Pads ``x_t`` by reflection with ``context`` pixels on every side and then to a multiple of
    ``multiple`` in every spatial dim, evaluates the wrapped model and crops its output back (the
    network only ever sees a slightly larger noisy image; the padded border is discarded); a
    ``cond`` of the state's spatial size (the measurement of a conditional model) is padded the
    same way. With ``channels_as_batch`` a ``(B, C, ...)`` state is evaluated as ``B * C``
    one-channel images (score-MRI's real/imaginary treatment).
    """

    def __init__(self, model: Any, multiple: int | None = None, channels_as_batch: bool = False,
                 context: int = 0) -> None:
        self.model, self.sde = model, model.sde
        self.multiple = downsampling_factor(model) if multiple is None else int(multiple)
        self.channels_as_batch = channels_as_batch
        if context < 0:
            raise ValueError(f"context must be >= 0 pixels, got {context}")
        self.context = int(context)

    def padded_size(self, n: int) -> int:
        """The size the network sees for an image side of ``n`` pixels."""
        n += 2 * self.context
        return n + (-n) % self.multiple

    def predict(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Prediction:
        b, c = x.shape[:2]
        spatial = x.shape[2:]
        t = (t.expand(b) if t.ndim == 0 else t).to(x.dtype)
        z, tz = x, t
        if self.channels_as_batch and c > 1:
            z, tz = x.reshape(b * c, 1, *spatial), t.repeat_interleave(c)
        pads: list[int] = []
        for n in reversed(spatial):
            extra = self.padded_size(n) - n - 2 * self.context
            pads += [self.context + extra // 2, self.context + extra - extra // 2]
        if any(pads):
            mode = "reflect" if all(p < n for p, n in zip(pads[::2], reversed(spatial), strict=True)) else "replicate"
            z = nnf.pad(z, pads, mode=mode)
            if cond is not None and tuple(cond.shape[2:]) == tuple(spatial):
                cond = nnf.pad(cond.to(z.dtype), pads, mode=mode)  # conditioning images padded alike
        pred = self.model.predict(z, tz, cond)
        out = pred.output
        if any(pads):
            index = [slice(None), slice(None)]
            for d, n in enumerate(spatial):
                lo = pads[2 * (len(spatial) - 1 - d)]
                index.append(slice(lo, lo + n))
            out = out[tuple(index)]
        out = out.reshape(b, c, *spatial)
        return Prediction(pred.kind, out, x, self.sde.alpha(t), self.sde.sigma(t))


# --------------------------------------------------------------------------------------------
# solvers
# --------------------------------------------------------------------------------------------
def make_guidance(name: str, operator: LinearOperator, y: Tensor, spec: dict[str, Any] | None = None,
                  model: Any = None) -> Guidance:
    """The :mod:`~scorerecon.models.guidance` object of solver ``name`` on ``(operator, y)``.

    ``dds_tta`` needs the prior's network (``model``): its guidance owns an adapted copy of it,
    :attr:`~scorerecon.models.adaptation.TestTimeAdaptation.model`, which the sampler must run.
    """
    spec = solver_spec(name) if spec is None else spec
    if name in ("dc", "projection"):
        return MeasurementProjection(operator, y, lam=spec["lam"], on="state")
    if name == "dps":
        return DPSGuidance(operator, y, step_size=spec["step_size"])
    if name == "dds":
        if spec.get("tv_xy", 0.0) > 0:
            from scorerecon.pipelines.tasks.tv_admm import TVxyADMM

            return TVxyADMM(operator, y, lam=spec["tv_xy"], mu=spec["lam"], n_cg=spec["cg_iter"])
        return ConjugateGradientDataStep(operator, y, n_iter=spec["cg_iter"], lam=spec["lam"])
    if name == "prox":
        return ProximalDataStep(operator, y, lam=spec["lam"])
    if name == "dds_tta":
        if model is None:
            raise ValueError("solver 'dds_tta' adapts the prior: make_guidance needs its network (model=)")
        return TestTimeAdaptation(model, operator, y, make_guidance("dds", operator, y, spec), adapter=spec["adapter"],
                                  rank=spec["rank"], lr=spec["lr"], every=spec["every"])
    raise ValueError(f"unknown solver {name!r}; expected one of {list(SOLVERS)}")


def run_sampler(model: Any, shape: tuple[int, ...], spec: dict[str, Any], guidance: Guidance, nfe: int,
                seed: int | list[int], device: torch.device | str, x_init: Tensor | None = None,
                t_start: float | None = None) -> SampleResult:
    """THE call into :func:`~scorerecon.models.samplers.sample` for every task (swap point for batching).

    ``x_init`` / ``t_start``: the warm start (model space), see :func:`~scorerecon.models.samplers.sample`.
    """
    options = {"eta": spec["eta"]} if spec["sampler"] == "ddim" else {}
    warm = {} if x_init is None else {"x_init": x_init, "t_start": t_start}
    return sample(model, shape, sampler=spec["sampler"], nfe=nfe, seed=seed, device=device,
                  guidance=guidance, **warm, **options)


def sample_seeds(problem: Problem, seed: int, sample: int) -> list[int]:
    """The seed of every batch element of ``problem`` for posterior sample ``sample`` of a run seeded ``seed``.

    ``derive_seed(seed, "slice", id, sample)`` for each element's id in
    :attr:`Problem.slice_ids` (``reconstruct`` passes the input store's z indices, so slice 54's
    noise is the same whatever else rides in its batch, its position or the batch size), or its
    position in the batch when the problem names none. Never a function of the data: the same
    seed gives the same streams on every device and for inputs that differ only in scale.
    """
    n = int(problem.shape[0])
    ids = problem.slice_ids if problem.slice_ids is not None and len(problem.slice_ids) == n else range(n)
    return [derive_seed(int(seed), "slice", int(i), int(sample)) for i in ids]


@dataclass
class Reconstruction:
    """A solver's output for a batch: model-space mean, physical image, optional std, cost."""

    model_state: Tensor  # (B, ...) model space; the mean over samples when n_samples > 1
    image: Tensor  # physical units (complex for MRI, HU for CT)
    std: Tensor | None  # per-pixel std over posterior samples of |image| (physical units), or None
    nfe: int  # network evaluations per sample
    seconds: float
    solver: str
    spec: dict[str, Any]
    seeds: list[list[int]]  # per posterior sample, the seed of every batch element (sample_seeds)
    samples: Tensor | None = None  # (n_samples, B, ...) physical images when n_samples > 1
    execution: dict[str, Any] | None = None  # how the tile engine ran it (device, precision, batches)


def reconstruct(problem: Problem, model: Any, solver: str, nfe: int = 50, seed: int = 0, n_samples: int = 1,
                device: torch.device | str = "cpu",
                guidance: Callable[[LinearOperator, Tensor], Guidance] | None = None,
                init: Tensor | None = None, t_start: float | None = None, engine: Any = None,
                **overrides: Any) -> Reconstruction:
    """Reconstruct ``problem`` with ``solver`` under ``model`` (``nfe`` network calls per sample).

    Warm start (CCDF, Chung, Sim & Ye, CVPR 2022): ``init`` -- an estimate in physical units on
    the problem's image grid, e.g. the TV reconstruction -- is mapped to the model's space
    (:attr:`Problem.from_physical`), diffused to ``t_start`` and every sample runs its ``nfe``
    steps from there with the solver's data step as usual (hard data consistency stays hard).

    Every slice of the batch and every posterior sample draws its noise from its own stream
    (:func:`sample_seeds`), so a slice's result does not depend on the slices it is batched
    with (solvers that couple slices by design excepted: TV along z, the shared TTA adapter).

    ``n_samples > 1`` draws that many posterior samples and
    returns their mean and the per-pixel std of the physical magnitude. ``guidance(operator, y)``,
    a factory called once per sample, replaces the solver's own data step (e.g.
    :class:`~.volume.TVzADMM`) while keeping its sampler settings.
    ``overrides`` change solver settings (see :data:`DEFAULT_SOLVERS`).

    Execution (:mod:`.batching`): the prior runs inside a :class:`~scorerecon.pipelines.engine.TileEngine`
    (``engine``: its :class:`~scorerecon.pipelines.engine.EngineConfig` -- precision, ``torch.compile``,
    batch size; ``device`` always wins), under the device's precision policy (bf16 autocast on CUDA,
    fp32 elsewhere). A problem that can be cut (:attr:`Problem.select`) runs its slices x posterior
    samples in batches the engine's memory planner sizes; solvers and guidance factories that couple
    the batch (``dds_tta``, TV along z) run each sample's batch whole.
    """
    from scorerecon.pipelines.tasks.batching import prepare_engine, solve

    spec = problem.spec(solver, **overrides)
    prior = prepare_engine(model, problem, device, engine)
    device = prior.device
    x_init = None
    if init is not None:
        if problem.from_physical is None or t_start is None:
            raise ValueError("a warm start needs t_start and a problem that maps images to the model space")
        x_init = problem.from_physical(torch.as_tensor(init)).to(device)
    start = time.perf_counter()
    states, seeds, nfe_used, execution = solve(problem, prior, solver, spec, nfe, seed, int(n_samples), guidance,
                                               x_init, t_start)
    images = [problem.to_physical(x) for x in states]
    seconds = time.perf_counter() - start
    if n_samples == 1:
        return Reconstruction(states[0], images[0], None, nfe_used, seconds, solver, spec, seeds, execution=execution)
    stack = torch.stack(images)
    mean_state = torch.stack(states).mean(0)
    std = stack.abs().std(dim=0)
    return Reconstruction(mean_state, stack.mean(0), std, nfe_used, seconds, solver, spec, seeds, samples=stack,
                          execution=execution)
