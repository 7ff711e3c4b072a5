"""Diffusion cloud removal (13 Sentinel-2 bands) vs. temporal and spatial baselines on held-out data (issue 5).

Evaluation pairs: the three real clear dates of the shared Sentinel-2 area under the **held-out**
real cloud shapes of the ``s2_cloud`` card (cloud probability blended with the real overcast
date, :mod:`scorerecon.modalities.optical.clouds`), scored on the held-out columns [67, 100)
only. Every held-out shape date is used once per clear date (rotating assignment, ``len(shapes)``
rounds of three dates); metrics are averaged over all pairs. Each round is written as ``.npy``
stacks under ``results/remote/`` and scored by
:func:`scorerecon.pipelines.evaluate_remote.evaluate_cloud` -- the code of ``scorerecon evaluate
--task cloud``. Prints a markdown table and the targets (PSNR inside the mask >= best baseline
+ 2 dB; 90 % interval coverage in [0.80, 0.95]) and saves ``docs/figures/cloud_comparison.png``
(cloudy input / mask / baselines / diffusion mean / reference / errors / posterior std).

    python benchmarks/cloud.py [--nfe 10] [--samples 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def rounds(card: dict, out_dir: Path) -> list[tuple[Path, Path, Path]]:
    """Write one (clear, cloudy, mask) triple of stacks per round of held-out shapes."""
    from scorerecon.modalities.optical import clouds

    data = card["data"]
    scenes = clouds.load_stack(clouds.REMOTE_DIR / "s2_l1c_reference_scenes.npy")
    probs = clouds.load_stack(clouds.REMOTE_DIR / "s2_cloud_probability.npy")[..., 0]
    masks = clouds.load_stack(clouds.REMOTE_DIR / "s2_cloud_mask.npy")[..., 0]
    clear = scenes[data["clear_dates"]]
    shapes = data["eval_shape_dates"]
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for k in range(len(shapes)):
        chosen = [shapes[(k + t) % len(shapes)] for t in range(len(clear))]
        cloudy = clouds.cloudy_stack(clear, probs[chosen], scenes[data["cloud_layer_date"]])
        triple = tuple(out_dir / f"s2_eval_round{k}_{name}.npy" for name in ("clear", "cloudy", "mask"))
        for path, arr in zip(triple, (clear, cloudy, masks[chosen].astype(np.uint8)), strict=True):
            np.save(path, arr)
        files.append(triple)
    return files


def _rgb(scene: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.clip((np.stack([scene[3], scene[2], scene[1]], -1) - lo) / (hi - lo), 0, 1)


def figure(model, triple: tuple[Path, Path, Path], nfe: int, samples: int, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from scorerecon.modalities.optical.baselines import CLOUD_BASELINES
    from scorerecon.pipelines.reconstruct_remote import cloud_scene

    x0, x1 = model.card["data"]["holdout"]["x"]
    clear, cloudy, masks = (np.load(p) for p in triple)
    t = int(np.argmax(masks[:, :, x0:x1].reshape(len(masks), -1).mean(1)))  # the cloudiest held-out date
    other_t = t - 1 if t > 0 else t + 1
    ref = np.moveaxis(clear[t], -1, 0)[..., x0:x1].astype(np.float64)
    inp = np.moveaxis(cloudy[t], -1, 0)[..., x0:x1].astype(np.float64)
    other = np.moveaxis(clear[other_t], -1, 0)[..., x0:x1].astype(np.float64)
    mask = masks[t][:, x0:x1].astype(bool)
    with torch.no_grad():
        mean, std, _ = cloud_scene(model, model.card["data"], inp, mask.astype(np.float32), other, nfe=nfe,
                                   samples=samples, seed=7)
    temporal = CLOUD_BASELINES["temporal_matched"](inp, mask, other)
    bih = CLOUD_BASELINES["biharmonic"](inp, mask, other)
    lo = np.percentile(ref[[3, 2, 1]], 1, axis=(1, 2))
    hi = np.percentile(ref[[3, 2, 1]], 99, axis=(1, 2))
    err = {k: np.abs(v - ref).mean(0) for k, v in (("temporal", temporal), ("diffusion", mean))}
    vmax = np.percentile(np.concatenate([e.ravel() for e in err.values()]), 99)
    panels = [("cloudy input", _rgb(inp, lo, hi)), ("cloud mask", mask),
              ("nearest date, matched", _rgb(temporal, lo, hi)),
              ("biharmonic", _rgb(bih, lo, hi)), (f"diffusion mean ({samples}x{nfe} NFE)", _rgb(mean, lo, hi)),
              ("reference (clear)", _rgb(ref, lo, hi)), ("|nearest date - ref|", err["temporal"]),
              ("|diffusion - ref|", err["diffusion"]), ("posterior std", std.mean(0))]
    fig, axes = plt.subplots(1, 9, figsize=(16, 4.4))
    for ax, (title, img) in zip(axes, panels, strict=True):
        if img.ndim == 3:
            ax.imshow(img)
        elif title.startswith("|"):
            ax.imshow(img, cmap="magma", vmin=0, vmax=vmax)
        else:
            ax.imshow(img, cmap="gray" if "mask" in title else "magma")
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.suptitle("Sentinel-2 held-out columns, held-out real cloud shape; RGB = B4/B3/B2; errors: mean |reflectance| "
                 "over 13 bands", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    from scorerecon.models.checkpoint import load_score_model
    from scorerecon.pipelines.evaluate import markdown_table
    from scorerecon.pipelines.evaluate_remote import evaluate_cloud
    from scorerecon.pipelines.hardware import one_line

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints/s2_cloud"))
    parser.add_argument("--nfe", type=int, default=10)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "results/remote"))
    parser.add_argument("--figure", default=str(ROOT / "docs/figures/cloud_comparison.png"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_score_model(args.checkpoint)
    model.eval()
    start = time.perf_counter()
    print(f"# benchmarks/cloud.py ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n")
    files = rounds(model.card, Path(args.out))
    results = [evaluate_cloud(*triple, checkpoint=args.checkpoint, nfe=args.nfe, samples=args.samples, seed=k)
               for k, triple in enumerate(files)]
    # average every metric over the rounds (each round already averages its dates)
    merged = results[0]
    for name, entry in merged["methods"].items():
        for key, value in list(entry.items()):
            if key not in ("family", "nfe", "samples") and isinstance(value, (int, float)):
                vals = [r["methods"][name][key] for r in results if r["methods"][name].get(key) is not None]
                entry[key] = float(np.sum(vals)) if key == "seconds" else float(np.mean(vals))
    p = merged["params"]
    print(f"#### {len(files)} rounds x {p['dates']} clear dates, held-out shapes "
          f"{model.card['data']['eval_shape_dates']}; {p['holdout']} ({p['evaluated_shape'][0]}x"
          f"{p['evaluated_shape'][1]} px, 13 bands)\n")
    print(markdown_table(merged, primary="psnr_inside"))
    m = merged["methods"]
    classical = {k: v for k, v in m.items() if v["family"] == "classical"}
    best = max(classical, key=lambda k: classical[k]["psnr_inside"])
    gap = m["diffusion"]["psnr_inside"] - classical[best]["psnr_inside"]
    cov = m["diffusion"]["coverage90"]
    print(f"\n- PSNR inside the mask: diffusion {m['diffusion']['psnr_inside']:.2f} dB vs best baseline {best} "
          f"{classical[best]['psnr_inside']:.2f} dB: {gap:+.2f} dB "
          f"(target >= +2 dB: {'met' if gap >= 2 else 'missed'})")
    print(f"- 90 % interval coverage inside the mask: {cov:.3f} (target 0.80-0.95: "
          f"{'met' if 0.80 <= cov <= 0.95 else 'missed'}); mean posterior std {m['diffusion']['std_inside']:.4f}")
    print(f"\nConvention: {merged['convention']}\n\n{one_line()}  (wall {time.perf_counter() - start:.0f} s)")
    figure(model, files[0], args.nfe, args.samples, Path(args.figure))
    print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
