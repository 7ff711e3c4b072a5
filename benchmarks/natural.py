"""Natural-image restoration benchmark on photographs no prior trained on: per image and mean, two sets.

Two held-out sets, 256x256 centre crops (the issue's setting): the held-out Kodak images
(kodim01, 05, 13, 19, 23: outside every Kodak prior's training set) and the held-out registry
photographs of ``make photos`` (one photo per held-out scene group of
:mod:`scorerecon.modalities.natural.photos`; no prior here saw any of them). Every run is
:func:`scorerecon.pipelines.evaluate_natural.evaluate_natural` (the code behind ``scorerecon
evaluate``), which also refuses any input whose sha256 a prior's card lists.

Runs (``RUNS``): x4 SR (bicubic vs zero-shot DDRM / DiffPIR and the conditional SR3-style model,
at equal NFE: one sample each at ``--nfe``, and means of 4 samples), sigma = 25 denoising (NLM,
TV, BM3D vs Tweedie, SDEdit, DDRM started where the measurement is, and DDRM started at t = 1
at the same NFE), 70 % random-pixel inpainting, motion deblurring and low light. The script
prints the command, date and machine, a table per run and set (means), the per-image PSNR, and
the verdict on the issue's targets; ``--out`` keeps every result JSON (per-image PSNR / SSIM).

``--quick``: 2 Kodak images and 2 photos (39 min at the default 20 NFE on a shared 2-core CPU at
load 10, 2026-12-04; the tiny prior costs 1-3 s per NFE at 256x256 there). ``--prior`` /
``--sr-checkpoint`` / ``--lowlight-checkpoint`` evaluate other priors (e.g.
``results/priors_gpu/photos_prior`` from ``make train-gpu``).

``--tune`` instead grid-searches the classical baselines' parameters
(:data:`scorerecon.modalities.natural.baselines.GRIDS`) on crops of TRAINING images (kodim02,
07, 15) and prints the table the values in ``TUNED`` were copied from; ``--tune-solvers`` does
the same for the DiffPIR ``lam`` and the DPS step on one training crop; ``--tune-pnp`` grids the
PnP solver's ``sigma_max`` and ``lam`` on the three training crops (mean PSNR per task);
``--tune-tta`` grids ``tweedie_tta``'s test-time adaptation (adapter, steps, rate) at sigma 25 on
five Kodak crops outside the held-out set.

Usage::

    python benchmarks/natural.py --quick --threads 1
    python benchmarks/natural.py --threads 1            # all 5 Kodak + 14 photos
    python benchmarks/natural.py --tune
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from scorerecon.errors import InputError
from scorerecon.modalities.natural import degradations as deg
from scorerecon.modalities.natural.baselines import GRIDS, tune
from scorerecon.modalities.natural.datasets import DEFAULT_KODAK, HOLDOUT, load_rgb
from scorerecon.pipelines.evaluate import markdown_table
from scorerecon.pipelines.evaluate_natural import LOWLIGHT, _degrade, _hwc, evaluate_natural

REPO = Path(__file__).resolve().parents[1]
KODAK = (REPO / DEFAULT_KODAK).resolve()
PHOTOS = REPO / "data" / "photos"
TRAINING_TUNE = ("kodim02", "kodim07", "kodim15")

#: benchmark runs: (label, task, options)
RUNS: list[tuple[str, str, dict]] = [
    ("sr_x4", "sr", {"scale": 4}),
    ("denoise_25", "denoise", {"sigma": 25.0}),
    ("inpaint_random", "inpaint", {"mask": "random"}),
    ("deblur_motion", "deblur", {"kernel": "motion"}),
    ("lowlight", "lowlight", {}),
]
#: the evaluate_natural calls of each run (the first also runs every classical baseline); SR
#: compares the conditional model and the zero-shot solvers at equal NFE (1 x nfe and 4 x nfe).
#: pnp runs once: the mean of 4 runs (pnp_mean4) gained 0.01-0.04 dB on the quick sets for 4x the NFE.
#: pnp inpainting runs at 40 NFE, its registry default: on the training crops (kodim02/07/15, 256^2)
#: 20 / 30 / 40 / 60 / 80 ladder steps gave 30.67 / 30.88 / 30.95 / 30.90 / 30.88 dB; x4 SR stays at 20
#: (40 steps: 28.00 vs 28.05 dB), 2026-12-06
VARIANTS: dict[str, list[dict]] = {
    "sr_x4": [{"solvers": ["ddrm", "prox"]}, {"solvers": ["cond_sr"], "cond_samples": 1},
              {"solvers": ["prox"], "samples": 4}, {"solvers": ["cond_sr"]}, {"solvers": ["pnp"]}],
    "denoise_25": [{"solvers": ["tweedie_x8", "sdedit", "ddrm"]}, {"solvers": ["ddrm"], "start": "prior"},
                   {"solvers": ["tweedie_tta"]}],
    "inpaint_random": [{"solvers": ["ddrm"]}, {"solvers": ["prox"], "samples": 4}, {"solvers": ["pnp"], "nfe": 40}],
    "deblur_motion": [{"solvers": ["ddrm"]}, {"solvers": ["prox"], "samples": 4}, {"solvers": ["pnp"]}],
    "lowlight": [{"solvers": ["cond_lowlight"]}],
}
#: the issue's targets: best diffusion minus best classical PSNR must be >= this (dB)
TARGETS: dict[str, tuple[float, str]] = {
    "sr_x4": (1.0, "SR x4 >= best classical + 1 dB"), "denoise_25": (0.0, "denoising sigma 25 >= BM3D"),
    "inpaint_random": (1.0, "random inpainting >= best classical + 1 dB"),
    "deblur_motion": (0.0, "motion deblurring stays ahead"), "lowlight": (0.0, "low light stays ahead"),
}
QUICK_KODAK = ("kodim05", "kodim23")
DEFAULT_FIGURE = REPO / "docs" / "figures" / "natural_comparison.jpg"
#: the reflected border contexts (pixels per side) --tune-context compares
CONTEXT_GRID = (0, 8, 16, 32)


def heldout_photos() -> list[Path]:
    """One photo per held-out scene group of ``make photos``, in catalogue order."""
    from scorerecon.modalities.natural.photos import CATALOGUE, photo_files, split_of

    installed = {p.relative_to(PHOTOS).as_posix(): p for p in photo_files(PHOTOS, "heldout")}
    seen, out = set(), []
    for photo in CATALOGUE:
        if split_of(photo.group) == "heldout" and photo.group not in seen:
            seen.add(photo.group)
            out.append(installed[photo.file])
    return out


def _crop(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    r, c = (h - size) // 2, (w - size) // 2
    return img[r: r + size, c: c + size]


def run_tuning(size: int = 128) -> None:
    """Grid-search every tunable baseline on training crops; prints the grids."""
    clean = [_crop(load_rgb(KODAK / f"{n}.png"), size) for n in TRAINING_TUNE]
    setups = {"wiener": ("deblur", {"kernel": "gaussian"}), "tv_deconv": ("deblur", {"kernel": "gaussian"}),
              "nlm": ("denoise", {"sigma": 25.0}), "tv": ("denoise", {"sigma": 25.0}),
              "gamma": ("lowlight", {}), "clahe": ("lowlight", {})}
    for name in GRIDS:
        task, opts = setups[name]
        pairs = []
        for k, img in enumerate(clean):
            x = torch.from_numpy(img.transpose(2, 0, 1)[None].copy()).double()
            _, y, _, ctx = _degrade(task, x, {"scale": 4, "sigma": 25.0, "kernel": "gaussian", "mask": "box", **opts},
                                    100 + k)
            pairs.append((img.astype(np.float64), _hwc(y), ctx))
        best, rows = tune(name, pairs)
        print(f"{name} ({task}, training crops {', '.join(TRAINING_TUNE)}): best {best}")
        for row in rows:
            print("   ", {k: round(v, 4) for k, v in row.items()})


def run_solver_tuning(size: int, nfe: int, solvers: tuple[str, ...] = ("ddrm", "prox", "dps")) -> None:
    """Coordinate search of the solvers' settings on one TRAINING crop per task (kodim02).

    Each grid is searched with the best values found so far for the same solver (DiffPIR: ``lam``
    first, then ``eta`` at that ``lam``). The DPS grid is of the base step (the problem divides it
    by ``||A||``).
    """
    from scorerecon.models.checkpoint import load_score_model
    from scorerecon.pipelines.evaluate_natural import rgb_metrics
    from scorerecon.pipelines.tasks.natural import natural_problem, restore_zero_shot

    model = load_score_model(REPO / "checkpoints" / "photos_prior")
    img = _crop(load_rgb(KODAK / "kodim02.png"), size)
    x = torch.from_numpy(img.transpose(2, 0, 1)[None].copy())
    for task, opts in (("sr", {"scale": 4}), ("deblur", {"kernel": "gaussian"}), ("denoise", {"sigma": 25.0}),
                       ("inpaint", {"mask": "random"})):
        op, y, noise, _ = _degrade(task, x, {"scale": 4, "sigma": 25.0, "kernel": "gaussian", "mask": "random",
                                             **opts}, 100)
        problem = natural_problem(y.float(), op, model.card, noise)
        lam_grid = (3.0, 10.0, 30.0, 100.0, 300.0) if noise > 0 else (1e-3, 1e-2, 0.1)
        best: dict[str, dict[str, float]] = {s: {} for s in solvers}
        for solver, key, grid in (("ddrm", "eta", (0.0, 0.5, 0.85, 1.0)), ("prox", "lam", lam_grid),
                                  ("prox", "eta", (0.5, 0.85, 1.0)), ("dps", "step_size", (0.25, 0.5, 1.0, 2.0, 3.0))):
            if solver not in solvers:
                continue
            scores = {}
            for value in grid:
                setting = {**best[solver], key: value}
                if solver == "dps":
                    setting["step_size"] = value / problem.info["operator_norm"]
                rec = restore_zero_shot(problem, model, solver, nfe=nfe, seed=0, **setting)
                scores[value] = rgb_metrics(img, _hwc(rec.image))["psnr"]
                print(f"{task} {solver} {best[solver]} {key}={value}: {scores[value]:.2f} dB", flush=True)
            best[solver][key] = max(scores, key=scores.get)
        print(f"{task}: best {best}", flush=True)


def run_pnp_tuning(size: int, nfe: int, prior: Path) -> None:
    """Grid of the PnP ladder's top ``sigma_max`` (then ``lam`` where the measurement is noisy) on
    TRAINING crops (kodim02, 07, 15), mean PSNR per task; the best values went into ``PNP_DEFAULTS``."""
    from scorerecon.models.checkpoint import load_score_model
    from scorerecon.pipelines.evaluate_natural import rgb_metrics
    from scorerecon.pipelines.tasks.natural import natural_problem, restore_zero_shot
    from scorerecon.pipelines.tasks.pnp import PNP_DEFAULTS

    model = load_score_model(prior)
    clean = [_crop(load_rgb(KODAK / f"{n}.png"), size) for n in TRAINING_TUNE]
    for task, opts in (("sr", {"scale": 4}), ("deblur", {"kernel": "motion"}), ("denoise", {"sigma": 25.0}),
                       ("inpaint", {"mask": "random"})):
        cases = []
        for k, img in enumerate(clean):
            x = torch.from_numpy(img.transpose(2, 0, 1)[None].copy())
            op, y, noise, _ = _degrade(task, x, {"scale": 4, "sigma": 25.0, "kernel": "motion", "mask": "random",
                                                 **opts}, 100 + k)
            cases.append((img, natural_problem(y.float(), op, model.card, noise)))
        best = dict(PNP_DEFAULTS)
        grids = [("sigma_max", (0.5, 1.0, 2.0))] + ([("lam", (0.3, 1.0, 3.0))] if cases[0][1].info[
            "noise_std_model"] > 0 else [])
        for key, grid in grids:
            scores = {}
            for value in grid:
                setting = {**best, key: value}
                psnrs = [rgb_metrics(img, _hwc(restore_zero_shot(problem, model, "pnp", nfe=nfe, seed=0,
                                                                 **setting).image))["psnr"]
                         for img, problem in cases]
                scores[value] = float(np.mean(psnrs))
                print(f"{task} pnp {key}={value} ({', '.join(f'{v:.2f}' for v in psnrs)}): mean {scores[value]:.2f} dB",
                      flush=True)
            best[key] = max(scores, key=scores.get)
        print(f"{task}: best {best}", flush=True)


#: ``--tune-tta``: (adapter, Adam steps, learning rate) of the R2R test-time adaptation of ``tweedie_tta``
TTA_GRID: tuple[tuple[str, int, float], ...] = (("lora", 40, 1e-3), ("lora", 120, 1e-3), ("full", 120, 1e-4),
                                                ("full", 240, 1e-4))
#: the tuning crops of ``--tune-tta``: the PnP ones plus two more Kodak images outside the held-out set
TTA_TUNE = (*TRAINING_TUNE, "kodim10", "kodim20")


def run_tta_tuning(size: int, prior: Path) -> None:
    """Mean PSNR of ``tweedie_tta`` at sigma 25 on the tuning crops :data:`TTA_TUNE` for each setting of
    :data:`TTA_GRID`, beside ``tweedie_x8`` (no adaptation); the best went into ``TWEEDIE_TTA_DEFAULTS``."""
    from scorerecon.models.checkpoint import load_score_model
    from scorerecon.pipelines.evaluate_natural import rgb_metrics
    from scorerecon.pipelines.tasks.natural import natural_problem, restore_zero_shot

    model = load_score_model(prior)
    cases = []
    for k, name in enumerate(TTA_TUNE):
        img = _crop(load_rgb(KODAK / f"{name}.png"), size)
        op, y, noise, _ = _degrade("denoise", torch.from_numpy(img.transpose(2, 0, 1)[None].copy()),
                                   {"sigma": 25.0}, 100 + k)
        cases.append((img, natural_problem(y.float(), op, model.card, noise)))
    settings = [("tweedie_x8", {})] + [("tweedie_tta", {"adapter": a, "steps": n, "lr": lr}) for a, n, lr in TTA_GRID]
    for solver, setting in settings:
        tic = time.perf_counter()
        psnrs = [rgb_metrics(img, _hwc(restore_zero_shot(problem, model, solver, seed=k, **setting).image))["psnr"]
                 for k, (img, problem) in enumerate(cases)]
        print(f"denoise {solver} {setting} ({', '.join(f'{v:.2f}' for v in psnrs)}): mean {np.mean(psnrs):.3f} dB, "
              f"{time.perf_counter() - tic:.0f} s", flush=True)


def run_context_tuning(size: int, nfe: int, prior: Path) -> None:
    """Mean PSNR on TRAINING crops (kodim02, 07, 15) for each border context of :data:`CONTEXT_GRID`:
    the default solvers of x4 SR, inpainting (pnp) and sigma-25 denoising (tweedie_x8); the choice
    went into ``NATURAL_BORDER_CONTEXT``."""
    from scorerecon.models.checkpoint import load_score_model
    from scorerecon.pipelines.evaluate_natural import rgb_metrics
    from scorerecon.pipelines.tasks import natural as natural_tasks

    model = load_score_model(prior)
    clean = [_crop(load_rgb(KODAK / f"{n}.png"), size) for n in TRAINING_TUNE]
    for task, opts, solver in (("sr", {"scale": 4}, "pnp"), ("inpaint", {"mask": "random"}, "pnp"),
                               ("denoise", {"sigma": 25.0}, "tweedie_x8")):
        cases = []
        for k, img in enumerate(clean):
            x = torch.from_numpy(img.transpose(2, 0, 1)[None].copy())
            cases.append((img, _degrade(task, x, {"scale": 4, "sigma": 25.0, "mask": "random", **opts}, 100 + k)))
        for context in CONTEXT_GRID:
            natural_tasks.NATURAL_BORDER_CONTEXT = context  # natural_problem reads it per call
            psnrs = []
            for img, (op, y, noise, _) in cases:
                problem = natural_tasks.natural_problem(y.float(), op, model.card, noise)
                rec = natural_tasks.restore_zero_shot(problem, model, solver, nfe=nfe, seed=0)
                psnrs.append(rgb_metrics(img, _hwc(rec.image))["psnr"])
            print(f"{task} {solver} context={context} ({', '.join(f'{v:.2f}' for v in psnrs)}): "
                  f"mean {np.mean(psnrs):.2f} dB", flush=True)


def save_panels(res: dict, path: Path) -> None:
    """The first image of every method of one run, for :func:`figure` (so runs can be made separately)."""
    np.savez_compressed(path, **{name: np.asarray(imgs[0], dtype=np.float32) for name, imgs in res["_images"].items()})


def figure(out: Path, path: Path) -> None:
    """Rows = the runs found in ``out`` (JSON + panels); columns = degraded / best classical / best
    diffusion / reference, on the first image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [label for label, _, _ in RUNS
            if (out / f"{label}.json").exists() and (out / f"{label}_panels.npz").exists()]
    fig, axes = plt.subplots(len(rows), 4, figsize=(10, 2.6 * len(rows)), squeeze=False)
    for r, label in enumerate(rows):
        methods = json.loads((out / f"{label}.json").read_text())["methods"]
        with np.load(out / f"{label}_panels.npz") as panels_file:
            images = {k: [panels_file[k]] for k in panels_file.files}
        best = {fam: max((n for n, m in methods.items() if m["family"] == fam), key=lambda n: methods[n]["psnr"])
                for fam in ("classical", "diffusion") if any(m["family"] == fam for m in methods.values())}
        panels = [("degraded", images["degraded"][0], "")]
        for fam in ("classical", "diffusion"):
            if fam in best:
                n = best[fam]
                panels.append((n, images[n][0], f" {methods[n]['psnr']:.2f} dB"))
        panels.append(("reference", images["reference"][0], ""))
        for c in range(4):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(panels):
                name, img, note = panels[c]
                shown = np.clip(img, 0, 1)
                if label == "lowlight" and name == "degraded":
                    shown = np.clip(shown * 6, 0, 1)
                    name = "degraded (x6 for display)"
                ax.imshow(shown, interpolation="nearest")
                ax.set_title(f"{label}: {name}{note}" if c == 0 else f"{name}{note}", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_set(label: str, task: str, opts: dict, inputs: list[Path], args: argparse.Namespace) -> dict:
    """Every variant of one run on one image set, merged into one result (methods in call order)."""
    merged: dict | None = None
    only = set(args.only.split(",")) if args.only else ({"cond_sr"} if args.cond_only else None)
    variants = [v for v in VARIANTS[label] if only is None or only & set(v["solvers"])]
    for k, variant in enumerate(variants):
        variant = {"nfe": args.nfe, **variant}  # a variant may fix its own NFE (pnp inpainting: 40)
        res = evaluate_natural(task, inputs, seed=args.seed, crop=args.crop, keep_images=True,
                               checkpoint=args.prior, cond_checkpoint={"sr": args.sr_checkpoint,
                                                                       "lowlight": args.lowlight_checkpoint}.get(task),
                               baselines=None if k == 0 else [], **variant, **opts)
        if merged is None:
            merged = res
            continue
        for key, m in res["methods"].items():
            merged["methods"][key] = m
            merged["_images"][key] = res["_images"][key]
            merged["params"]["solver_settings"][key] = res["params"]["solver_settings"][key]
    return merged


def per_image_table(res: dict, names: list[str]) -> str:
    """Rows = images, columns = methods' PSNR (dB)."""
    methods = res["methods"]
    lines = ["| image | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for i, name in enumerate(names):
        lines.append(f"| {name} | " + " | ".join(f"{m['per_image'][i]['psnr']:.2f}" for m in methods.values()) + " |")
    return "\n".join(lines)


def best(res: dict, family: str) -> tuple[str, float]:
    cands = {n: m["psnr"] for n, m in res["methods"].items() if m["family"] == family}
    name = max(cands, key=cands.get)
    return name, cands[name]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--nfe", type=int, default=20, help="NFE per sample (pnp inpainting: 40)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK_KODAK)} and 2 photos")
    parser.add_argument("--runs", default=",".join(r[0] for r in RUNS))
    parser.add_argument("--prior", default=None, help="zero-shot prior (default checkpoints/photos_prior)")
    parser.add_argument("--sr-checkpoint", default=None, help="conditional x4 SR model (default photos_sr4)")
    parser.add_argument("--lowlight-checkpoint", default=None,
                        help="conditional low-light model (default: the registry's)")
    parser.add_argument("--only", default=None,
                        help="comma list of solvers: run only the variants using one of them (baselines always run)")
    parser.add_argument("--cond-only", action="store_true",
                        help="sr_x4: only the classical baselines and the conditional model (comparing SR checkpoints)")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "natural")
    parser.add_argument("--figure", type=Path, default=None,
                        help=f"figure path (default {DEFAULT_FIGURE.relative_to(REPO)}, full runs only)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--figure-only", action="store_true", help="redraw the figure from the runs saved in --out")
    parser.add_argument("--tune", action="store_true", help="tune the classical baselines on training crops")
    parser.add_argument("--tune-solvers", action="store_true", help="tune DiffPIR lam / DPS step on a training crop")
    parser.add_argument("--tune-pnp", action="store_true", help="tune the PnP ladder on training crops")
    parser.add_argument("--tune-tta", action="store_true",
                        help="tune tweedie_tta's test-time adaptation on training crops (sigma 25)")
    parser.add_argument("--tune-context", action="store_true",
                        help="choose the reflected border context the prior sees, on training crops")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.tune:
        run_tuning()
        return
    if args.tune_solvers:
        run_solver_tuning(64, args.nfe)
        return
    if args.tune_pnp:
        run_pnp_tuning(128, args.nfe, args.prior or REPO / "checkpoints" / "photos_prior")
        return
    if args.tune_tta:
        run_tta_tuning(args.crop, Path(args.prior or REPO / "checkpoints" / "photos_prior"))
        return
    if args.tune_context:
        run_context_tuning(128, args.nfe, Path(args.prior or REPO / "checkpoints" / "photos_prior"))
        return
    if args.figure_only:
        figure(args.out, args.figure or DEFAULT_FIGURE)
        print(f"figure: {args.figure or DEFAULT_FIGURE}")
        return
    from scorerecon.hardware import describe

    try:
        photos = heldout_photos()
    except InputError as exc:
        raise SystemExit(f"natural benchmark: {exc.one_line()}") from None
    kodak = [KODAK / f"{n}.png" for n in (QUICK_KODAK if args.quick else HOLDOUT)]
    sets = {"Kodak held-out": kodak, "held-out photos": photos[:2] if args.quick else photos}
    hw = describe("cpu")
    print(f"command: python benchmarks/natural.py {' '.join(sys.argv[1:])}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: {hw['cpu']}, {hw['cores']} cores "
          f"(shared), torch {hw['torch']}, {args.threads} thread(s); crops {args.crop}x{args.crop}, "
          f"{args.nfe} NFE per sample (pnp inpainting: 40), seed {args.seed}")
    args.out.mkdir(parents=True, exist_ok=True)
    verdicts = []
    for label, task, opts in RUNS:
        if label not in args.runs.split(","):
            continue
        for k, (set_name, inputs) in enumerate(sets.items()):
            start = time.perf_counter()
            res = run_set(label, task, opts, inputs, args)
            clean = {key: v for key, v in res.items() if not key.startswith("_")}
            tag = f"{label}_{'kodak' if k == 0 else 'photos'}"
            (args.out / f"{tag}.json").write_text(json.dumps(clean, indent=1))
            if k == 0:
                save_panels(res, args.out / f"{label}_panels.npz")
                (args.out / f"{label}.json").write_text(json.dumps(clean, indent=1))
            names = [p.stem for p in inputs]
            print(f"\n### {label}: {set_name} ({len(inputs)}: {', '.join(names)}; "
                  f"{time.perf_counter() - start:.0f} s)\n")
            print(markdown_table(clean, "psnr"))
            print("\nPSNR per image (dB):\n")
            print(per_image_table(clean, names), flush=True)
            (bc, bc_psnr), (bd, bd_psnr) = best(clean, "classical"), best(clean, "diffusion")
            margin, text = TARGETS[label]
            delta = bd_psnr - bc_psnr
            verdicts.append(f"| {text} | {set_name} | {bc} {bc_psnr:.2f} | {bd} {bd_psnr:.2f} "
                            f"({clean['methods'][bd]['nfe']} NFE) | {delta:+.2f} | "
                            f"{'met' if delta >= margin else f'missed by {margin - delta:.2f} dB'} |")
    print("\n### Targets (best diffusion vs best classical, mean PSNR)\n")
    print("| target | images | best classical | best diffusion | delta | verdict |")
    print("|---|---|---|---|---|---|")
    print("\n".join(verdicts))
    partial = args.quick or args.only or args.cond_only or set(args.runs.split(",")) != {r[0] for r in RUNS}
    if args.figure is None and partial:  # a partial run does not overwrite the README's figure
        print(f"\nlow light: {LOWLIGHT.describe()}; degradations: {deg.__name__} (no figure: partial run)")
        return
    figure_path = args.figure or DEFAULT_FIGURE
    figure(args.out, figure_path)
    print(f"\nfigure: {figure_path} (first Kodak image); low light: {LOWLIGHT.describe()}; "
          f"degradations: {deg.__name__}")


if __name__ == "__main__":
    main()
