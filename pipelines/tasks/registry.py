"""The task registry: one declaration per reconstruction task, the table every command dispatches on.

A *task* is a measurement model plus everything a user-facing command needs to know about it:
which physics simulates and inverts it, which classical baselines and diffusion solvers it
offers, which shipped prior each solver runs by default, which metrics score it and under which
conventions, its task-specific command-line options, and its default NFE and posterior-sample
count. :data:`TASKS` holds one :class:`Task` per task, in one place, so a reader can compare them
side by side and a new task is one more entry (docs/tasks.md).

Who reads it:

* ``scorerecon reconstruct`` / ``evaluate`` / ``sample``: ``--task`` choices (:func:`task_names`),
  the default solver, prior, NFE and samples, and the module that runs the task
  (:attr:`Task.reconstruct`, :attr:`Task.evaluate`);
* the evaluate modules: conventions, default checkpoints, per-task solver lists;
* the workflow (``workflows/common.smk``): task names and the priors a task reads, so a retrained
  prior reruns its evaluation; the config schema is checked against this table by
  ``tests/test_registry.py``.

Implementations stay where they are: physics in :mod:`scorerecon.modalities`, model-space problems
and solvers in :mod:`scorerecon.pipelines.tasks` and its modality modules, baselines beside the
physics. The registry names them by reference (``"package.module:attribute"``, optionally
``[key]`` into a mapping), resolved lazily by :func:`resolve`; the test resolves every
reference, so a renamed function fails a test instead of a user's run.

This module imports only the standard library: the workflow reads it without loading torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

__all__ = ["TASKS", "Physics", "Task", "default_checkpoint", "foreign_options", "get_task", "markdown_table",
           "refuse_foreign_options", "resolve", "task_names"]

#: The medical solvers (implemented once in :mod:`scorerecon.pipelines.tasks`; ``make_guidance``).
MEDICAL_SOLVERS: tuple[str, ...] = ("dc", "projection", "dps", "dds", "prox", "dds_tta")

MRI_CONVENTION = ("fastMRI: magnitude images; PSNR with data range = max of the reference volume; SSIM per slice "
                  "(skimage, 7x7 uniform window) averaged; NMSE over the volume")
CT_CONVENTION = ("HU clamped to [-1000, 400] and mapped to [0, 1], data range 1; PSNR over the volume; SSIM per slice "
                 "(skimage, 7x7 uniform window) averaged; NMSE over the volume")
NATURAL_CONVENTION = (
    "RGB in [0, 1] (8-bit values / 255), estimates clipped to [0, 1]; PSNR (skimage, data range 1) over all pixels "
    "and the 3 channels, SSIM (skimage structural_similarity, 7x7 uniform window, channel_axis, data range 1) "
    "averaged over channels; both averaged over images (mean of per-image dB). Not on Y: PSNR on Y (BT.601 luma) "
    "is typically 0.5-1.5 dB higher for SR/deblurring since chroma errors drop out. LPIPS not computed: the lpips "
    "package downloads its AlexNet/VGG backbone weights at first use (torchvision), which does not work offline.")
PANSHARPEN_CONVENTION = (
    "Wald reduced resolution (MTF-matched Gaussian, decimation by the ratio, grid phase ratio//2) on the held-out "
    "area; reference = the original MS in its units. Q2n: 32x32 blocks, bands zero-padded to 2^n (toolbox q2n.m); "
    "SAM: degrees, mean over pixels (torchmetrics); ERGAS: 100/ratio * sqrt(mean_b (RMSE_b/mean_b)^2) "
    "(torchmetrics); SCC: Laplacian high-pass correlation. Full resolution: torchmetrics D_lambda, D_s (11x11 "
    "Gaussian UIQI; MTF-degraded pan as pan_lr), QNR = (1-D_lambda)(1-D_s).")
S2SR_CONVENTION = (
    "Wald reduced resolution on the held-out area, block-aligned Sentinel-2 grids: 20 m bands -> 40 m input, 10 m "
    "guide bands -> 20 m (MTF-matched Gaussians with the MSI gains at Nyquist, 2-tap mean at the half-pixel phase "
    "0.5); reference = the original 20 m bands in DN. Q2n (Q8, 32x32 blocks), SAM (degrees), ERGAS (ratio 2), SCC "
    "as for pansharpen. Classical methods band-wise with a least-squares synthetic pan per 20 m band.")
CLOUD_CONVENTION = (
    "TOA reflectance; regions: inside / outside the cloud mask; PSNR with data range = max of the clear reference; "
    "SSIM: skimage 7x7 uniform window, map averaged over the region; SAM degrees; MAE; outside_equal: fraction of "
    "values outside the mask equal to the input bit for bit; coverage90: fraction of masked reference values "
    "within the split-conformal 90 % interval (coverage90_raw: posterior mean +- 1.645 std).")


@dataclass(frozen=True)
class Physics:
    """Where a task's measurement model lives (references, see :func:`resolve`).

    ``operator``: the forward operator (a :class:`~scorerecon.models.guidance.LinearOperator` or,
    for a non-linear degradation, the callable that applies it); ``simulate``: makes the
    measurement from a clean image (what ``evaluate`` runs, and ``reconstruct`` on image stores);
    ``problem``: builds the model-space :class:`~scorerecon.pipelines.tasks.Problem` the zero-shot
    solvers run on, ``None`` where only conditional models apply (the condition is the measurement).
    """

    operator: str
    simulate: str
    problem: str | None = None


@dataclass(frozen=True)
class Task:
    """One reconstruction task (module docstring). Names of checkpoints are looked up by
    :func:`scorerecon.models.checkpoint.resolve_checkpoint` (shipped priors, ``$SCORERECON_CHECKPOINTS``)."""

    name: str
    modality: str  #: ``MR``, ``CT``, ``optical`` (georeferenced), ``photo``
    summary: str
    physics: Physics
    #: reference to the baseline implementations (a tuple of names or a name -> function mapping)
    baselines: str
    #: diffusion methods, as ``evaluate --solvers`` / ``reconstruct --solver`` spell them
    solvers: tuple[str, ...]
    default_solver: str
    #: shipped checkpoint per role: ``prior`` (unconditional, zero-shot solvers), ``cond`` (conditional model),
    #: ``anyband`` (pan-sharpening only: the conditional any-band prior for MS band sets ``cond`` cannot serve)
    priors: Mapping[str, str]
    #: metric names the evaluation reports (``primary`` ranks methods) and the function computing them
    metrics: tuple[str, ...]
    primary: str
    metric_fn: str
    convention: str
    #: network evaluations per sample and posterior samples when the command line gives none
    nfe: int
    samples: int
    #: module exposing ``evaluate_from_args(args, log) -> result``
    evaluate: str
    #: ``module:function`` running ``scorerecon reconstruct`` for this task: ``(args) -> exit code``
    reconstruct: str
    #: solvers that run the ``cond`` checkpoint (the others run ``prior``)
    conditional: tuple[str, ...] = ()
    #: task-specific options of ``reconstruct`` and ``evaluate`` (flags; the common ones are not listed)
    options: tuple[str, ...] = ()
    #: what ``reconstruct --input`` reads
    reconstruct_input: str = ""
    #: solvers ``evaluate`` runs only when ``--solvers`` names them (costly, and no gain measured yet)
    opt_in: tuple[str, ...] = ()

    @property
    def default_prior(self) -> str:
        """The checkpoint the default solver runs."""
        return self.prior_for(self.default_solver)

    def prior_for(self, solver: str) -> str:
        """The shipped checkpoint ``solver`` runs on this task."""
        if solver not in self.solvers:
            raise ValueError(f"--task {self.name} has no solver {solver!r}; choose from {list(self.solvers)}")
        return self.priors["cond" if solver in self.conditional else "prior"]

    def baseline_names(self) -> tuple[str, ...]:
        """The classical baselines, read from their implementation (imports it)."""
        return tuple(resolve(self.baselines))


def _natural(name: str, summary: str, operator: str, solvers: tuple[str, ...], default: str, nfe: int,
             options: tuple[str, ...], cond: str | None = None, linear: bool = True) -> Task:
    conditional = tuple(s for s in solvers if s.startswith("cond_"))
    # a non-linear degradation has no zero-shot solver: only its conditional model applies
    priors = {"prior": "photos_prior"} if linear else {}
    if cond:
        priors["cond"] = cond
    return Task(
        name=name, modality="photo", summary=summary,
        physics=Physics(operator=f"scorerecon.modalities.natural.degradations:{operator}",
                        simulate="scorerecon.pipelines.evaluate_natural:degrade",
                        problem="scorerecon.pipelines.tasks.natural:natural_problem" if linear else None),
        baselines=f"scorerecon.modalities.natural.baselines:BASELINES[{name}]",
        solvers=solvers, default_solver=default, priors=MappingProxyType(priors), conditional=conditional,
        metrics=("psnr", "ssim"), primary="psnr", metric_fn="scorerecon.pipelines.evaluate_natural:rgb_metrics",
        convention=NATURAL_CONVENTION, nfe=nfe, samples=4 if default in conditional else 1,
        evaluate="scorerecon.pipelines.evaluate_natural",
        reconstruct="scorerecon.pipelines.reconstruct_natural:run_natural",
        options=options, reconstruct_input="a degraded photograph: an image file (PNG, JPEG, TIFF) or an ingested "
                                           "image store (band, y, x)")


_ZERO_SHOT = ("ddrm", "prox", "dps", "pnp")
_REMOTE_EVALUATE = "scorerecon.pipelines.evaluate_remote"
_REMOTE_RECONSTRUCT = "scorerecon.pipelines.reconstruct_remote:run_remote"

#: Every task, by name. Defaults (solver, NFE) are the benchmarks' choices on held-out data:
#: docs/medical.md, docs/natural_images.md, docs/remote_sensing.md.
TASKS: Mapping[str, Task] = MappingProxyType({t.name: t for t in (
    Task(
        name="mri", modality="MR", summary="accelerated MRI: undersampled (multi-coil) Cartesian k-space -> magnitude",
        physics=Physics(operator="scorerecon.modalities.mri.operators:MulticoilMRI",
                        simulate="scorerecon.pipelines.tasks.mri:simulate_singlecoil",
                        problem="scorerecon.pipelines.tasks.mri:mri_problem"),
        baselines="scorerecon.pipelines.tasks.mri:MRI_BASELINES",
        # brain_mr_ddpm: on 4 unseen subjects (R=4, quick) DDS cold 25.39 dB vs 25.00 for brain_ddpm (docs/medical.md)
        solvers=MEDICAL_SOLVERS, default_solver="dds", priors=MappingProxyType({"prior": "brain_mr_ddpm"}),
        opt_in=("dds_tta",),
        metrics=("psnr", "ssim", "nmse"), primary="psnr", metric_fn="scorerecon.modalities.metrics:image_metrics",
        convention=MRI_CONVENTION, nfe=50, samples=1,
        evaluate="scorerecon.pipelines.evaluate", reconstruct="scorerecon.pipelines.reconstruct:run_medical",
        options=("--slices", "--mask", "--accel", "--calib", "--complex-mode", "--intensity", "--keep-oversampling",
                 "--coils", "--coil-maps", "--warm-start", "--t0", "--no-resample", "--tv-z", "--tv-xy", "--crop",
                 "--downsample", "--nonfinite"),
        reconstruct_input="a k-space store (coil, z, ky, kx) or an MR image store (z, y, x)"),
    Task(
        name="ct", modality="CT", summary="sparse-view / limited-angle parallel-beam CT: sinogram -> HU",
        physics=Physics(operator="scorerecon.modalities.ct.radon:ParallelBeamProjector",
                        simulate="scorerecon.pipelines.tasks.ct:simulate_sinogram",
                        problem="scorerecon.pipelines.tasks.ct:ct_problem"),
        baselines="scorerecon.pipelines.tasks.ct:CT_BASELINES",
        solvers=MEDICAL_SOLVERS, default_solver="dds", priors=MappingProxyType({"prior": "head_ct_ddpm"}),
        opt_in=("dds_tta",),
        metrics=("psnr", "ssim", "nmse"), primary="psnr", metric_fn="scorerecon.modalities.metrics:ct_metrics",
        convention=CT_CONVENTION, nfe=50, samples=1,
        evaluate="scorerecon.pipelines.evaluate", reconstruct="scorerecon.pipelines.reconstruct:run_medical",
        options=("--slices", "--views", "--arc", "--warm-start", "--t0", "--no-resample", "--tv-z", "--tv-xy", "--crop",
                 "--downsample", "--nonfinite"),
        reconstruct_input="a CT image store (z, y, x) in HU (a sinogram is simulated) or a sinogram store "
                          "(z, angle, det)"),
    Task(
        name="pansharpen", modality="optical",
        summary="pan-sharpening: coarse multispectral bands + a fine panchromatic band -> fine multispectral",
        physics=Physics(operator="scorerecon.modalities.optical.degradation:wald_degrade",
                        simulate="scorerecon.modalities.optical.degradation:wald_degrade"),
        baselines="scorerecon.modalities.optical.baselines:PANSHARPEN_BASELINES",
        solvers=("diffusion",), default_solver="diffusion", conditional=("diffusion",),
        # cond: the Landsat-8 prior, the default for exact B1-B7; anyband: every other band set (ratio 2)
        priors=MappingProxyType({"cond": "landsat8_pansharpen", "anyband": "anyband_pansharpen"}),
        metrics=("q2n", "sam", "ergas", "scc", "qnr", "d_lambda", "d_s"), primary="ergas",
        metric_fn="scorerecon.modalities.optical.metrics:pansharpen_reduced",
        convention=PANSHARPEN_CONVENTION, nfe=2, samples=5,
        evaluate=_REMOTE_EVALUATE, reconstruct=_REMOTE_RECONSTRUCT,
        options=("--ms", "--pan", "--ratio", "--crop", "--pan-band", "--tile", "--overlap"),
        reconstruct_input="an ingested pan + MS product (groups res_15m, res_30m)"),
    Task(
        name="s2sr", modality="optical",
        summary="Sentinel-2 20 m -> 10 m super-resolution of B05, B06, B07, B8A, B11, B12 guided by B02, B03, B04, B08",
        physics=Physics(operator="scorerecon.modalities.optical.degradation:wald_degrade",
                        simulate="scorerecon.modalities.optical.s2_superres:wald_pair"),
        baselines="scorerecon.modalities.optical.s2_superres:S2SR_BASELINES",
        solvers=("diffusion",), default_solver="diffusion", conditional=("diffusion",),
        priors=MappingProxyType({"cond": "s2_sr20"}),
        metrics=("q2n", "sam", "ergas", "scc"), primary="ergas",
        metric_fn="scorerecon.modalities.optical.metrics:pansharpen_reduced",
        # 5 DDIM steps x 4 samples: the best <= 20-NFE split on a training strip (benchmarks/s2_superres.py --tune)
        convention=S2SR_CONVENTION, nfe=5, samples=4,
        evaluate=_REMOTE_EVALUATE, reconstruct=_REMOTE_RECONSTRUCT,
        options=("--ms", "--crop", "--tile", "--overlap"),
        reconstruct_input="an ingested Sentinel-2 product with the 10 m and 20 m bands (groups res_10m, res_20m)"),
    Task(
        name="cloud", modality="optical",
        summary="cloud removal: a cloudy Sentinel-2 scene + another clear date -> the clear scene",
        physics=Physics(operator="scorerecon.modalities.optical.clouds:blend",
                        simulate="scorerecon.modalities.optical.clouds:cloudy_stack"),
        baselines="scorerecon.modalities.optical.baselines:CLOUD_BASELINES",
        solvers=("diffusion",), default_solver="diffusion", conditional=("diffusion",),
        priors=MappingProxyType({"cond": "s2_cloud"}),
        metrics=("psnr_inside", "ssim_inside", "sam_inside", "mae_inside", "psnr_outside", "ssim_outside",
                 "sam_outside", "mae_outside"), primary="psnr_inside",
        metric_fn="scorerecon.modalities.optical.metrics:cloud_metrics",
        convention=CLOUD_CONVENTION, nfe=10, samples=8,
        evaluate=_REMOTE_EVALUATE, reconstruct=_REMOTE_RECONSTRUCT,
        options=("--clear", "--cloudy", "--mask", "--other", "--cloud-mask", "--reflectance-scale", "--tile",
                 "--overlap"),
        reconstruct_input="a 13-band Sentinel-2 store of the cloudy date (--other: a clear date of the same grid)"),
    # pnp the default for sr / deblur / inpaint: best diffusion method on the 19 held-out photographs
    # (docs/natural_images.md "Plug-and-play"; x4 SR also beats the conditional photos_sr4 at 1/4 of its NFE)
    _natural("sr", "super-resolution: a bicubic-downsampled photograph -> x2 / x4 its size", "BicubicDown",
             (*_ZERO_SHOT, "cond_sr"), "pnp", 20, ("--scale", "--crop"), cond="photos_sr4"),
    _natural("deblur", "non-blind deblurring of a photograph (known Gaussian or motion kernel, noise sigma)", "Blur",
             _ZERO_SHOT, "pnp", 20, ("--kernel", "--sigma", "--crop")),
    _natural("denoise", "Gaussian denoising of a photograph (sigma given or estimated)", "Identity",
             # tweedie_tta: the only diffusion method ahead of BM3D on the 19 held-out photographs (+0.19 / +0.31 dB;
             # tweedie_x8 -0.07 / +0.03). No pnp: 2-4 dB under tweedie_x8 (docs/natural_images.md)
             ("tweedie_tta", "tweedie", "tweedie_x8", "sdedit", *(s for s in _ZERO_SHOT if s != "pnp")),
             "tweedie_tta", 20,
             ("--sigma", "--crop")),
    _natural("inpaint", "inpainting of a photograph's missing pixels (a mask, or its transparent pixels)",
             # 40 pnp steps: +0.28 dB over 20 on training crops, more steps no better (benchmarks/natural.py)
             "Inpainting", _ZERO_SHOT, "pnp", 40, ("--mask", "--inpaint-mask", "--crop")),
    _natural("lowlight", "low-light enhancement of a dark, noisy photograph (conditional model only)", "LowLight",
             ("cond_lowlight",), "cond_lowlight", 10, ("--crop",), cond="photos_lowlight", linear=False),
)})


def task_names(modality: str | None = None) -> tuple[str, ...]:
    """The registered task names (of one ``modality`` when given), in registry order."""
    return tuple(n for n, t in TASKS.items() if modality is None or t.modality == modality)


def get_task(name: str) -> Task:
    """The task called ``name``; ``ValueError`` naming the choices otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(TASKS)}") from None


def default_checkpoint(task: str, role: str = "prior") -> str:
    """The shipped checkpoint name of ``task`` for ``role`` (``prior`` or ``cond``)."""
    priors = get_task(task).priors
    if role not in priors:
        raise ValueError(f"task {task!r} has no {role!r} checkpoint (it has {', '.join(priors)})")
    return priors[role]


def markdown_table() -> str:
    """The registry as the markdown table docs/tasks.md shows (a test keeps the two equal; imports the
    baseline modules)."""
    lines = ["| task | modality | default solver (prior) | other solvers | baselines | NFE x samples | primary |",
             "|---|---|---|---|---|---|---|"]
    for t in TASKS.values():
        others = ", ".join(f"`{s}`" for s in t.solvers if s != t.default_solver) or "--"
        lines.append(f"| `{t.name}` | {t.modality} | `{t.default_solver}` (`{t.default_prior}`) | {others} | "
                     f"{', '.join(f'`{b}`' for b in t.baseline_names())} | {t.nfe} x {t.samples} | {t.primary} |")
    return "\n".join(lines)


def foreign_options(task: str, given: Iterable[Sequence[str]]) -> list[str]:
    """The options set on the command line (``given``: each option's flag and aliases) that belong to other
    tasks and not to ``task``; a command refuses them instead of silently ignoring them."""
    own = set(get_task(task).options)
    others = {o for t in TASKS.values() for o in t.options} - own
    return [next(f for f in flags if f in others) for flags in given
            if any(f in others for f in flags) and not any(f in own for f in flags)]


def refuse_foreign_options(task: str, given: Iterable[Sequence[str]]) -> None:
    """Raise one-line :class:`~scorerecon.errors.InputError` when :func:`foreign_options` finds any."""
    foreign = foreign_options(task, given)
    if foreign:
        from scorerecon.errors import InputError

        raise InputError(None, f"{', '.join(foreign)}: not an option of --task {task} (its options: "
                               f"{', '.join(get_task(task).options)})")


def resolve(ref: str) -> Any:
    """The object a reference names: ``"pkg.module:attr"`` or ``"pkg.module:attr[key]"`` (imports the module)."""
    module, _, attr = ref.partition(":")
    key = None
    if attr.endswith("]") and "[" in attr:
        attr, key = attr[:-1].split("[", 1)
    value = getattr(importlib.import_module(module), attr) if attr else importlib.import_module(module)
    return value if key is None else value[key]
