"""``scorerecon evaluate --task sr|deblur|denoise|inpaint|lowlight``: natural-image restoration benchmark.

For every ``--input`` image (read with the project's image reader, :mod:`scorerecon.modalities.
io.image`, as RGB in ``[0, 1]``; grey repeated, alpha dropped) the task's degradation is
simulated from the clean image, the classical baselines
(:mod:`scorerecon.modalities.natural.baselines`) and the diffusion solvers
(:mod:`scorerecon.pipelines.tasks.natural`) restore it, and PSNR / SSIM against the clean image
are averaged over the images.

Degradations (seeded by ``--seed``): ``sr`` bicubic downsampling by ``--scale``, noise-free;
``deblur`` ``--kernel gaussian`` (15x15, sigma 2) or ``motion`` (length 15 at 30 degrees),
circular, plus Gaussian noise sigma 1 (0..255 scale); ``denoise`` Gaussian noise ``--sigma``;
``inpaint`` ``--mask box|random|strokes`` (box: a centred hole of a quarter of the area; random:
70 % of the pixels missing; strokes: free-form brush strokes), noise-free; ``lowlight``
exposure 0.15, gamma 1.5, 600 photons at white, read noise 0.01.

Methods: zero-shot solvers on the one unconditional prior (``--checkpoint``, default
``checkpoints/photos_prior``): ``ddrm``, ``prox``, ``dps`` (and ``tweedie`` / ``tweedie_x8`` /
``tweedie_tta`` / ``sdedit`` for denoising); conditional models (``cond_sr`` for ``--scale 4``, ``cond_lowlight``):
``checkpoints/photos_sr4``, ``checkpoints/photos_lowlight`` (``cond_checkpoint`` replaces them),
mean of 4 DDIM samples (``cond_samples``). Low light is non-linear: only the conditional model
and the classical baselines apply.

Denoising starts DDRM / DiffPIR / DPS where the measurement is (``start="measurement"``: at the
``t*`` whose noise level is ``sigma``, from ``alpha_t* y``; :mod:`scorerecon.pipelines.tasks.
natural`); ``start="prior"`` starts them at ``t = 1`` and names them ``<solver>_prior_start``.
The other tasks start at ``t = 1``.

``--samples N`` averages N posterior samples per zero-shot solver (reported NFE = N x nfe).
Every method also reports its per-image PSNR / SSIM (``per_image``, in input order).

Images a model was trained on (sha256 of the file equal to one recorded in its card's
``data.sources``) are refused; images the cards do not list are accepted.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from scorerecon.modalities.io.store import sha256_file
from scorerecon.modalities.natural import degradations as deg
from scorerecon.modalities.natural.baselines import BASELINES, run_baseline
from scorerecon.modalities.natural.datasets import load_rgb, lowlight_condition
from scorerecon.pipelines.errors import InputError
from scorerecon.pipelines.options import engine_config
from scorerecon.pipelines.tasks.registry import NATURAL_CONVENTION
from scorerecon.pipelines.tasks.registry import TASKS as REGISTRY

__all__ = ["CONVENTION", "DEFAULT_NFE", "degrade", "evaluate_from_args", "evaluate_natural", "rgb_metrics"]

# views of the task registry (pipelines/tasks/registry.py), the one table of these tasks
TASKS = tuple(n for n, t in REGISTRY.items() if t.modality == "photo")
CONVENTION = NATURAL_CONVENTION
DEFAULT_NFE = {n: REGISTRY[n].nfe for n in TASKS}
#: the unconditional prior (zero-shot solvers) and each task's conditional model
DEFAULT_CHECKPOINTS = {"prior": REGISTRY["sr"].priors["prior"],
                       **{n: REGISTRY[n].priors["cond"] for n in TASKS if "cond" in REGISTRY[n].priors}}
ZERO_SHOT = {n: tuple(s for s in REGISTRY[n].solvers if s not in REGISTRY[n].conditional) for n in TASKS}
CONDITIONAL = {n: REGISTRY[n].conditional[0] for n in TASKS if REGISTRY[n].conditional}
DEBLUR_NOISE = 1.0  # 0..255 scale
LOWLIGHT = deg.LowLight(exposure=0.15, gamma=1.5, peak=600.0, read_noise=0.01)
COND_SAMPLES = 4
#: DDIM eta of the conditional models: on TRAINING crops (kodim02, kodim07, 128x128, x4 SR, 4
#: samples, 10 NFE) eta 1 beat 0.5 and 0 by 0.1-0.5 dB
COND_ETA = 1.0


def rgb_metrics(reference: np.ndarray, estimate: np.ndarray) -> dict[str, float]:
    """PSNR / SSIM of ``(H, W, 3)`` images in ``[0, 1]`` (see :data:`CONVENTION`); ``estimate`` is clipped."""
    est = np.clip(np.asarray(estimate, dtype=np.float64), 0.0, 1.0)
    ref = np.asarray(reference, dtype=np.float64)
    return {"psnr": float(peak_signal_noise_ratio(ref, est, data_range=1.0)),
            "ssim": float(structural_similarity(ref, est, data_range=1.0, channel_axis=-1))}


def _prepare(img: np.ndarray, crop: int | None, multiple: int, path: Path) -> np.ndarray:
    h, w = img.shape[:2]
    th, tw = (crop, crop) if crop else (h, w)
    if crop and (crop > h or crop > w):
        raise InputError(path, f"--crop {crop} is larger than the image ({h}x{w})")
    th, tw = th - th % multiple, tw - tw % multiple
    if th < multiple or tw < multiple:
        raise InputError(path, f"image {h}x{w} is too small (need at least {multiple}x{multiple})")
    r0, c0 = (h - th) // 2, (w - tw) // 2
    return img[r0: r0 + th, c0: c0 + tw]


def _training_hashes(cards: dict[str, dict[str, Any]]) -> dict[str, str]:
    out = {}
    for name, card in cards.items():
        for src in card.get("data", {}).get("sources", []):
            if isinstance(src, dict) and src.get("sha256"):
                out[src["sha256"]] = name
    return out


def degrade(task: str, clean: torch.Tensor, opts: dict[str, Any], seed: int) -> tuple[Any, torch.Tensor, float,
                                                                                       dict[str, Any]]:
    """The task's measurement simulation (the registry's ``physics.simulate``): ``(operator or None, degraded
    (1, 3, h, w), noise sigma 0..255, baseline ctx)`` for one clean image ``(1, 3, h, w)`` in [0, 1]."""
    shape = tuple(clean.shape[-2:])
    if task == "sr":
        op = deg.BicubicDown(shape, opts["scale"])
        return op, op.A(clean), 0.0, {"shape": shape}
    if task == "deblur":
        kernel = deg.gaussian_kernel(15, 2.0) if opts["kernel"] == "gaussian" else deg.motion_kernel(15, 30.0)
        op = deg.Blur(kernel, shape)
        return op, deg.add_noise(op.A(clean), DEBLUR_NOISE, seed), DEBLUR_NOISE, {"operator": op, "seed": seed}
    if task == "denoise":
        op = deg.Identity(shape)
        return op, deg.add_noise(clean, opts["sigma"], seed), opts["sigma"], {"sigma": opts["sigma"], "seed": seed}
    if task == "inpaint":
        mask = deg.make_mask(opts["mask"], shape, seed)
        op = deg.Inpainting(mask)
        return op, op.A(clean), 0.0, {"mask": mask}
    dark = LOWLIGHT(clean[0].numpy().transpose(1, 2, 0), np.random.default_rng(seed))
    return None, torch.from_numpy(dark.transpose(2, 0, 1)[None].copy()), 0.0, {}


_degrade = degrade  # the name benchmarks/natural.py imports


def _hwc(x: torch.Tensor) -> np.ndarray:
    return x[0].detach().cpu().double().numpy().transpose(1, 2, 0)


def evaluate_natural(task: str, inputs: list[Path], *, nfe: int | None = None, seed: int = 0, scale: int = 4,
                     sigma: float = 25.0, kernel: str = "gaussian", mask: str = "box", crop: int | None = None,
                     checkpoint: str | None = None, solvers: list[str] | None = None,
                     baselines: list[str] | None = None, device: str = "cpu", log: Any = None,
                     keep_images: bool = False, samples: int = 1, start: str | None = None,
                     cond_checkpoint: str | None = None, cond_samples: int = COND_SAMPLES,
                     engine: Any = None) -> dict[str, Any]:
    """Run the task's baselines and diffusion methods on ``inputs``; returns the result dict.

    ``samples > 1``: the zero-shot solvers return the mean of that many posterior samples
    (``nfe`` each); their names get a ``_meanN`` suffix. ``start``: where DDRM / DiffPIR / DPS
    start (``"measurement"``, denoising's default, or ``"prior"``; module docstring).
    ``cond_samples``: the conditional model's samples averaged (``cond_sr`` is the mean of the
    default 4; other counts are named ``cond_sr_meanN``, one sample ``cond_sr_1``).

    ``keep_images`` adds ``"_images": {method: [(H, W, 3) arrays]}`` plus ``"degraded"`` and
    ``"reference"`` (for figures; not JSON).
    """
    from scorerecon.models.checkpoint import load_score_model
    from scorerecon.pipelines.hardware import describe
    from scorerecon.pipelines.tasks.natural import natural_problem, restore_conditional, restore_zero_shot

    if task not in TASKS:
        raise InputError(None, f"--task must be one of {list(TASKS)}, got {task!r}")
    if not inputs:
        raise InputError(None, f"--task {task} needs --input IMG... (image files)")
    nfe = DEFAULT_NFE[task] if nfe is None else int(nfe)
    if nfe < 1:
        raise InputError(None, f"--nfe must be >= 1, got {nfe}")
    if task == "sr" and scale not in (2, 4):
        raise InputError(None, f"--scale must be 2 or 4, got {scale}")
    if task == "denoise" and not sigma > 0:
        raise InputError(None, f"--sigma must be > 0, got {sigma}")
    if task == "deblur" and kernel not in ("gaussian", "motion"):
        raise InputError(None, f"--kernel must be gaussian or motion, got {kernel!r}")
    if task == "inpaint" and mask not in ("box", "random", "strokes"):
        raise InputError(None, f"--mask must be box, random or strokes, got {mask!r}")
    if samples < 1:
        raise InputError(None, f"--samples must be >= 1, got {samples}")
    if crop is not None and crop < 8:
        raise InputError(None, f"--crop must be >= 8, got {crop}")
    start = start or ("measurement" if task == "denoise" else "prior")
    if start not in ("prior", "measurement") or (start == "measurement" and task != "denoise"):
        raise InputError(None, f"--start must be 'prior' or (denoising only) 'measurement', got {start!r}")
    if cond_samples < 1:
        raise InputError(None, f"cond_samples must be >= 1, got {cond_samples}")
    say = log or (lambda msg: None)

    zero = [s for s in ZERO_SHOT[task]]
    cond_name = CONDITIONAL.get(task) if (task != "sr" or scale == 4) else None
    available = zero + ([cond_name] if cond_name else [])
    chosen = available if solvers is None else solvers
    bad = [s for s in chosen if s not in available]
    if bad:
        raise InputError(None, f"unknown solver(s) {bad} for --task {task}; choose from {available}")
    base_names = list(BASELINES[task]) if baselines is None else baselines
    bad = [b for b in base_names if b not in BASELINES[task]]
    if bad:
        raise InputError(None, f"unknown baseline(s) {bad} for --task {task}; choose from {list(BASELINES[task])}")

    models: dict[str, Any] = {}
    if any(s in zero for s in chosen):
        models["prior"] = load_score_model(str(checkpoint or DEFAULT_CHECKPOINTS["prior"]), device=device)
    cond_path = str(cond_checkpoint or DEFAULT_CHECKPOINTS.get(task))
    if cond_name in chosen:
        models["cond"] = load_score_model(cond_path, device=device)
    for m in models.values():
        m.eval()
    paths = {"prior": str(checkpoint or DEFAULT_CHECKPOINTS["prior"]), "cond": cond_path}
    trained = _training_hashes({paths[k]: m.card for k, m in models.items()})

    multiple = 4 * (scale if task == "sr" else 1)
    clean_images, hashes = [], []
    for p in inputs:
        p = Path(p)
        if not p.is_file():
            raise InputError(p, "input image not found")
        digest = sha256_file(p)
        if digest in trained:
            raise InputError(p, f"this image was used to train {trained[digest]} (sha256 in its card); "
                                "evaluate on held-out images only")
        clean_images.append(_prepare(load_rgb(p), crop, multiple, p))
        hashes.append(digest)

    opts = {"scale": scale, "sigma": sigma, "kernel": kernel, "mask": mask}
    scores: dict[str, list[dict[str, float]]] = {}
    cost: dict[str, list[float]] = {}
    used_nfe: dict[str, int] = {}
    images: dict[str, list[np.ndarray]] = {"degraded": [], "reference": []}
    settings: dict[str, Any] = {}
    for k, img in enumerate(clean_images):
        clean = torch.from_numpy(img.transpose(2, 0, 1)[None].copy())
        op, y, noise, ctx = degrade(task, clean, opts, seed + k)
        y_hwc = _hwc(y)
        images["reference"].append(img)
        images["degraded"].append(y_hwc)
        outputs: dict[str, tuple[np.ndarray, int, float]] = {}
        for name in base_names:
            tic = time.perf_counter()
            est = run_baseline(name, y_hwc, ctx)
            outputs[name] = (est, 0, time.perf_counter() - tic)
        if zero and any(s in zero for s in chosen):
            problem = natural_problem(y.float(), op, models["prior"].card, noise)
            for name in (s for s in chosen if s in zero):
                n = 1 if name.startswith("tweedie") else samples
                label = name if n == 1 else f"{name}_mean{n}"
                how = {}
                if name in ("ddrm", "prox", "dps"):
                    how = {"start": start}
                    if task == "denoise" and start == "prior":
                        label = label.replace(name, f"{name}_prior_start", 1)
                rec = restore_zero_shot(problem, models["prior"], name, nfe=nfe, seed=seed + k, device=device,
                                        n_samples=n, engine=engine, **how)
                settings[label] = {**rec.spec, "samples_averaged": n}
                outputs[label] = (_hwc(rec.image), rec.nfe * n, rec.seconds)
        if cond_name in chosen:
            if task == "lowlight":
                gain = float(models["cond"].card["data"].get("cond_gain", 1.0))
                cond = torch.from_numpy(lowlight_condition(y_hwc, gain).transpose(2, 0, 1)[None].copy())
            else:
                cond = deg.bicubic_resize(y, tuple(clean.shape[-2:])).float()
            est, n, secs = restore_conditional(models["cond"], cond,
                                               nfe=nfe, seed=seed + k, n_samples=cond_samples, eta=COND_ETA,
                                               device=device, engine=engine)
            label = cond_name if cond_samples == COND_SAMPLES else (
                f"{cond_name}_1" if cond_samples == 1 else f"{cond_name}_mean{cond_samples}")
            settings[label] = {"sampler": "ddim", "eta": COND_ETA, "samples_averaged": cond_samples,
                               "nfe_per_sample": n}
            outputs[label] = (_hwc(est), n * cond_samples, secs)
        for name, (est, n, secs) in outputs.items():
            scores.setdefault(name, []).append(rgb_metrics(img, est))
            cost.setdefault(name, []).append(secs)
            used_nfe[name] = n
            images.setdefault(name, []).append(np.clip(est, 0, 1))
            say(f"{Path(inputs[k]).name} {name}: {scores[name][-1]['psnr']:.2f} dB")

    methods = {}
    for name in scores:
        family = "classical" if name in BASELINES[task] else "diffusion"
        methods[name] = {"family": family,
                         "psnr": round(float(np.mean([s["psnr"] for s in scores[name]])), 4),
                         "ssim": round(float(np.mean([s["ssim"] for s in scores[name]])), 5),
                         "nfe": int(used_nfe[name]),
                         "seconds": round(float(np.sum(cost[name])), 3),
                         "per_image": [{"psnr": round(v["psnr"], 4), "ssim": round(v["ssim"], 5)}
                                       for v in scores[name]]}
    degraded_note = {"sr": f"bicubic x{scale} (Pillow kernel, antialiased), noise-free",
                     "deblur": f"{kernel} blur (circular), noise sigma {DEBLUR_NOISE}/255",
                     "denoise": f"Gaussian noise sigma {sigma}/255, not clipped",
                     "inpaint": f"{mask} mask, noise-free", "lowlight": f"LowLight {LOWLIGHT.describe()}"}[task]
    params = {"inputs": [str(p) for p in inputs], "input_sha256": hashes, "crop": crop,
              "image_shapes": [list(i.shape[:2]) for i in clean_images], "degradation": degraded_note,
              "scale": scale if task == "sr" else None, "sigma": sigma if task == "denoise" else None,
              "kernel": kernel if task == "deblur" else None, "mask": mask if task == "inpaint" else None,
              "nfe": nfe, "seed": seed, "start": start, "solver_settings": settings,
              "checkpoints": {paths[k]: m.card.get("weights", {}).get("sha256") for k, m in models.items()},
              "hardware": describe(device), "seconds": "summed over images"}
    result = {"task": task, "convention": CONVENTION, "params": params, "methods": methods, "_primary": "psnr"}
    if keep_images:
        result["_images"] = images
    return result


def evaluate_from_args(args: argparse.Namespace, log: Any) -> dict[str, Any]:
    """The ``scorerecon evaluate`` entry point for the natural-image tasks."""
    from scorerecon.pipelines.evaluate import _csv

    pictures = getattr(args, "images", None) is not None  # --images: the report's picture set
    result = evaluate_natural(args.task, list(args.input or []), nfe=args.nfe, seed=args.seed, scale=args.scale,
                              sigma=args.sigma, kernel=args.kernel, mask=args.mask or "box", crop=args.crop,
                              checkpoint=args.checkpoint, solvers=_csv(args.solvers), baselines=_csv(args.baselines),
                              device=args.device, log=log, samples=args.samples or 1, keep_images=pictures,
                              engine=engine_config(args))
    if pictures:
        from scorerecon.pipelines.panels import natural_panels

        result["_panels"] = natural_panels(result)
    return result
