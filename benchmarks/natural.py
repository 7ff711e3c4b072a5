"""Natural-image restoration benchmark: one markdown table per task and a comparison figure.

Runs :func:`scorerecon.pipelines.evaluate_natural.evaluate_natural` (the code behind ``scorerecon
evaluate --task sr|deblur|denoise|inpaint|lowlight``) on centre crops of the held-out Kodak
images (kodim01, 05, 13, 19, 23; never seen by any of the three priors), writes each result JSON
to ``--out`` and prints a table per task (methods x PSNR / SSIM / NFE / seconds), then draws
``docs/figures/natural_comparison.png``: per task, the first image's degraded input, the best
classical baseline, the best diffusion method and the reference.

``--tune`` instead grid-searches the classical baselines' parameters
(:data:`scorerecon.modalities.natural.baselines.GRIDS`) on crops of TRAINING images (kodim02,
07, 15) and prints the table the values in ``TUNED`` were copied from; ``--tune-solvers`` does
the same for the DiffPIR ``lam`` and the DPS step on one training crop.

Usage::

    python benchmarks/natural.py --crop 128 --nfe 20 --threads 1
    python benchmarks/natural.py --tune
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from scorerecon.modalities.natural import degradations as deg
from scorerecon.modalities.natural.baselines import GRIDS, tune
from scorerecon.modalities.natural.datasets import DEFAULT_KODAK, HOLDOUT, load_rgb
from scorerecon.pipelines.evaluate import markdown_table
from scorerecon.pipelines.evaluate_natural import LOWLIGHT, _degrade, _hwc, evaluate_natural

REPO = Path(__file__).resolve().parents[1]
KODAK = (REPO / DEFAULT_KODAK).resolve()
TRAINING_TUNE = ("kodim02", "kodim07", "kodim15")

#: benchmark runs: (label, task, options)
RUNS: list[tuple[str, str, dict]] = [
    ("sr_x4", "sr", {"scale": 4}),
    ("deblur_gaussian", "deblur", {"kernel": "gaussian"}),
    ("deblur_motion", "deblur", {"kernel": "motion"}),
    ("denoise_25", "denoise", {"sigma": 25.0}),
    ("inpaint_random", "inpaint", {"mask": "random"}),
    ("inpaint_box", "inpaint", {"mask": "box"}),
    ("lowlight", "lowlight", {}),
]


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

    model = load_score_model(REPO / "checkpoints" / "kodak_prior")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--nfe", type=int, default=20)
    parser.add_argument("--cond-nfe", type=int, default=10, help="NFE of the conditional models")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mean-samples", type=int, default=4, help="also report DiffPIR's mean of N samples")
    parser.add_argument("--images", default=",".join(HOLDOUT), help="held-out Kodak stems")
    parser.add_argument("--runs", default=",".join(r[0] for r in RUNS))
    parser.add_argument("--out", type=Path, default=REPO / "results" / "natural")
    parser.add_argument("--figure", type=Path, default=REPO / "docs" / "figures" / "natural_comparison.png")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--figure-only", action="store_true", help="redraw the figure from the runs saved in --out")
    parser.add_argument("--tune", action="store_true", help="tune the classical baselines on training crops")
    parser.add_argument("--tune-solvers", action="store_true", help="tune DiffPIR lam / DPS step on a training crop")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.tune:
        run_tuning()
        return
    if args.tune_solvers:
        run_solver_tuning(64, args.nfe)
        return
    inputs = [KODAK / f"{s}.png" for s in args.images.split(",")]
    wanted = [] if args.figure_only else args.runs.split(",")
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for label, task, opts in RUNS:
        if label not in wanted:
            continue
        start = time.perf_counter()
        nfe = args.cond_nfe if task == "lowlight" else args.nfe
        res = evaluate_natural(task, inputs, nfe=nfe, seed=args.seed, crop=args.crop, keep_images=True, **opts)
        if task == "sr" and args.cond_nfe != args.nfe:  # the conditional SR model at its own NFE
            cond = evaluate_natural(task, inputs, nfe=args.cond_nfe, seed=args.seed, crop=args.crop, keep_images=True,
                                    solvers=["cond_sr"], baselines=[], **opts)
            res["methods"]["cond_sr"] = cond["methods"]["cond_sr"]
            res["_images"]["cond_sr"] = cond["_images"]["cond_sr"]
            res["params"]["solver_settings"]["cond_sr"] = cond["params"]["solver_settings"]["cond_sr"]
            res["params"]["cond_nfe"] = args.cond_nfe
        if args.mean_samples > 1 and task != "lowlight":  # Monte-Carlo posterior mean of the DiffPIR solver
            mean = evaluate_natural(task, inputs, nfe=nfe, seed=args.seed, crop=args.crop, keep_images=True,
                                    solvers=["prox"], baselines=[], samples=args.mean_samples, **opts)
            for key in mean["methods"]:
                res["methods"][key] = mean["methods"][key]
                res["_images"][key] = mean["_images"][key]
                res["params"]["solver_settings"][key] = mean["params"]["solver_settings"][key]
        results[label] = res
        clean = {k: v for k, v in res.items() if not k.startswith("_")}
        (args.out / f"{label}.json").write_text(json.dumps(clean, indent=1))
        save_panels(res, args.out / f"{label}_panels.npz")
        print(f"\n### {label} ({task} {opts or ''}; {len(inputs)} held-out Kodak crops {args.crop}x{args.crop}, "
              f"seed {args.seed}; {time.perf_counter() - start:.0f} s)\n")
        print(markdown_table(clean, "psnr"), flush=True)
    if results or args.figure_only:
        figure(args.out, args.figure)
        print(f"\nfigure: {args.figure}")
    print(f"low light setting: {LOWLIGHT.describe()}; degradations: {deg.__name__}")


if __name__ == "__main__":
    main()
