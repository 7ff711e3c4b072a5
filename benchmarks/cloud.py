"""Diffusion cloud removal (13 Sentinel-2 bands) vs. the matched nearest-date baseline, on date pairs weeks apart.

Evaluation pairs (issue 17): the three real clear dates of the shared Sentinel-2 area are
2015-07-11, 2015-08-30 and 2015-09-09 (:func:`~scorerecon.modalities.optical.clouds.reference_dates`);
the last two are ten days apart and nearly identical, so only pairs at least three weeks apart
are used -- 08-30 <- 07-11, 07-11 <- 08-30, 09-09 <- 07-11, 07-11 <- 09-09 (target <- other
date; 50 and 60 days) -- each under every **held-out** real cloud shape of the checkpoint's card
(rotating, one round per shape), on the held-out columns [67, 100) only. Each round's stacks are
written under ``results/remote/`` and scored by
:func:`scorerecon.pipelines.evaluate_remote.evaluate_cloud` -- the code of ``scorerecon
evaluate --task cloud`` -- with the other date of each target given explicitly.

Prints, per held-out pair and as the mean over pairs: PSNR inside the mask of the diffusion
output and of the radiometrically matched nearest-date baseline (target: diffusion >= baseline
+ 1 dB), the fraction of values outside the mask equal to the input (target: 1, exactly) and the
coverage of the split-conformal 90 % interval (target: 0.80-0.95; calibrated on the training
area by :func:`~scorerecon.pipelines.evaluate_remote.calibrate_cloud`, refitted with
``--calibrate``), then the full table of methods, the date, the command and the machine; saves
``docs/figures/cloud_comparison.png``.

    python benchmarks/cloud.py [--checkpoint checkpoints/s2_cloud] [--calibrate] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
#: (target, other) clear dates of the reference stack, >= 3 weeks apart (see the module doc)
MIN_GAP_DAYS = 21


def rounds(card: dict, out_dir: Path) -> tuple[list[tuple[Path, Path, Path]], list[int], list[int]]:
    """One (clear, cloudy, mask) triple of stacks per held-out shape; the stacks' dates and other dates.

    A stack holds one entry per ordered pair (its target date), so a date appears once per pair
    it is the target of; ``other_dates[i]`` is the stack index of entry ``i``'s other date.
    """
    from scorerecon.modalities.optical import clouds

    data = card["data"]
    scenes = clouds.load_stack(clouds.REMOTE_DIR / "s2_l1c_reference_scenes.npy")
    probs = clouds.load_stack(clouds.REMOTE_DIR / "s2_cloud_probability.npy")[..., 0]
    masks = clouds.load_stack(clouds.REMOTE_DIR / "s2_cloud_mask.npy")[..., 0]
    pairs = clouds.date_pairs(clouds.reference_dates(), list(data["clear_dates"]), MIN_GAP_DAYS)
    entries = [t for t, _ in pairs]  # one stack entry per pair (pairs are symmetric: every other is a target too)
    first = {d: entries.index(d) for d in set(entries)}  # an entry holding that date's clear scene
    other_dates = [first[o] for _, o in pairs]
    shapes = data["eval_shape_dates"]
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for k in range(len(shapes)):
        chosen = [shapes[(k + i) % len(shapes)] for i in range(len(entries))]
        clear = scenes[entries]
        cloudy = clouds.cloudy_stack(clear, probs[chosen], scenes[data["cloud_layer_date"]])
        triple = tuple(out_dir / f"s2_eval_round{k}_{name}.npy" for name in ("clear", "cloudy", "mask"))
        for path, arr in zip(triple, (clear, cloudy, masks[chosen].astype(np.uint8)), strict=True):
            np.save(path, arr)
        files.append(triple)
    return files, entries, other_dates


def _rgb(scene: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.clip((np.stack([scene[3], scene[2], scene[1]], -1) - lo) / (hi - lo), 0, 1)


def figure(model, triple: tuple[Path, Path, Path], other_dates: list[int], nfe: int, samples: int, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from scorerecon.modalities.optical.baselines import CLOUD_BASELINES
    from scorerecon.pipelines.reconstruct_remote import cloud_scene

    x0, x1 = model.card["data"]["holdout"]["x"]
    clear, cloudy, masks = (np.load(p) for p in triple)
    t = int(np.argmax(masks[:, :, x0:x1].reshape(len(masks), -1).mean(1) < 0.9))  # a partly cloudy held-out date
    ref = np.moveaxis(clear[t], -1, 0)[..., x0:x1].astype(np.float64)
    inp = np.moveaxis(cloudy[t], -1, 0)[..., x0:x1].astype(np.float64)
    other = np.moveaxis(clear[other_dates[t]], -1, 0)[..., x0:x1].astype(np.float64)
    mask = masks[t][:, x0:x1].astype(bool)
    with torch.no_grad():
        mean, std, _ = cloud_scene(model, model.card["data"], inp, mask.astype(np.float32), other, nfe=nfe,
                                   samples=samples, seed=7)
    temporal = CLOUD_BASELINES["temporal_matched"](inp, mask, other)
    lo = np.percentile(ref[[3, 2, 1]], 1, axis=(1, 2))
    hi = np.percentile(ref[[3, 2, 1]], 99, axis=(1, 2))
    err = {k: np.abs(v - ref).mean(0) for k, v in (("temporal", temporal), ("diffusion", mean))}
    vmax = np.percentile(np.concatenate([e.ravel() for e in err.values()]), 99)
    panels = [("cloudy input", _rgb(inp, lo, hi)), ("cloud mask", mask),
              ("nearest date, matched", _rgb(temporal, lo, hi)),
              (f"diffusion ({samples}x{nfe} NFE)", _rgb(mean, lo, hi)),
              ("reference (clear)", _rgb(ref, lo, hi)), ("|nearest date - ref|", err["temporal"]),
              ("|diffusion - ref|", err["diffusion"]), ("posterior std", std.mean(0))]
    fig, axes = plt.subplots(1, len(panels), figsize=(15, 4.4))
    for ax, (title, img) in zip(axes, panels, strict=True):
        if img.ndim == 3:
            ax.imshow(img)
        elif title.startswith("|"):
            ax.imshow(img, cmap="magma", vmin=0, vmax=vmax)
        else:
            ax.imshow(img, cmap="gray" if "mask" in title else "magma")
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.suptitle("Sentinel-2 held-out columns, held-out real cloud shape, other date weeks apart; RGB = B4/B3/B2; "
                 "errors: mean |reflectance| over 13 bands; outside the mask the output is the input", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    from scorerecon.hardware import one_line
    from scorerecon.modalities.optical.clouds import reference_dates
    from scorerecon.models.checkpoint import load_score_model
    from scorerecon.pipelines.evaluate import markdown_table
    from scorerecon.pipelines.evaluate_remote import calibrate_cloud, evaluate_cloud
    from scorerecon.pipelines.reconstruct_remote import CALIBRATION_FILE

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints/s2_cloud"))
    parser.add_argument("--nfe", type=int, default=10)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calibrate", action="store_true", help="refit the interval calibration (training area)")
    parser.add_argument("--out", default=str(ROOT / "results/remote"))
    parser.add_argument("--figure", default=str(ROOT / "docs/figures/cloud_comparison.png"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    print(f"# benchmarks/cloud.py ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n")
    print(f"command: python {' '.join(sys.argv)}\n")
    if args.calibrate or not (Path(args.checkpoint) / CALIBRATION_FILE).exists():
        cal = calibrate_cloud(args.checkpoint, nfe=args.nfe, samples=args.samples)
        print(f"interval calibration refitted: {cal.source}; q (band mean per depth group "
              f"{[0.0, *cal.edges]} px) = {np.round(np.mean(cal.q, 0), 2).tolist()}\n")
    model = load_score_model(args.checkpoint)
    model.eval()
    files, entries, other_dates = rounds(model.card, Path(args.out))
    results = [evaluate_cloud(*triple, checkpoint=args.checkpoint, nfe=args.nfe, samples=args.samples, seed=k,
                              other_dates=other_dates) for k, triple in enumerate(files)]
    dates = reference_dates()
    shapes = model.card["data"]["eval_shape_dates"]
    p = results[0]["params"]
    print(f"{len(files)} rounds (held-out cloud shapes {shapes}) x {len(entries)} date pairs >= {MIN_GAP_DAYS} days "
          f"apart; {p['holdout']} ({p['evaluated_shape'][0]}x{p['evaluated_shape'][1]} px, 13 bands); diffusion: "
          f"{args.samples} samples x {args.nfe} NFE, {p['interval']}\n")
    print("| round | target <- other (days) | shape | cloud | matched baseline dB | diffusion dB | gain dB | "
          "outside = input | coverage90 |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = []
    for k, res in enumerate(results):
        for row in res["per_date"]:
            i = row["date"]
            t, o = entries[i], entries[row["other_date"]]
            base, diff = row["methods"]["temporal_matched"], row["methods"]["diffusion"]
            gain = diff["psnr_inside"] - base["psnr_inside"]
            cov = diff.get("coverage90", float("nan"))
            n_values = row["cloud_fraction"] * p["evaluated_shape"][0] * p["evaluated_shape"][1]
            rows.append((gain, diff["outside_equal"], cov, n_values, base["psnr_inside"], diff["psnr_inside"]))
            print(f"| {k} | {dates[t]} <- {dates[o]} ({abs((dates[t] - dates[o]).days)}) | "
                  f"{shapes[(k + i) % len(shapes)]} | {row['cloud_fraction']:.2f} | {base['psnr_inside']:.2f} | "
                  f"{diff['psnr_inside']:.2f} | {gain:+.2f} | {diff['outside_equal']:.4f} | {cov:.3f} |")
    r = np.array(rows)
    gain, outside, cov = r[:, 0].mean(), r[:, 1].min(), r[:, 2].mean()
    pooled = float((r[:, 2] * r[:, 3]).sum() / r[:, 3].sum())
    print(f"\n**Mean over {len(r)} held-out pairs**: PSNR inside the mask diffusion {r[:, 5].mean():.2f} dB vs matched "
          f"nearest date {r[:, 4].mean():.2f} dB: {gain:+.2f} dB (target >= +1 dB: {'met' if gain >= 1 else 'missed'}; "
          f"ahead on {(r[:, 0] > 0).sum()} of {len(r)} pairs)")
    print(f"- outside the mask equal to the input: smallest fraction over pairs {outside:.4f} (target 1: "
          f"{'met' if outside == 1 else 'missed'})")
    print(f"- 90 % interval coverage inside the mask: mean over pairs {cov:.3f}, pooled over all masked values "
          f"{pooled:.3f} (target 0.80-0.95: {'met' if 0.80 <= cov <= 0.95 else 'missed'} for the mean, "
          f"{'met' if 0.80 <= pooled <= 0.95 else 'missed'} pooled)\n")
    merged = results[0]
    for name, entry in merged["methods"].items():
        for key, value in list(entry.items()):
            if key not in ("family", "nfe", "samples") and isinstance(value, (int, float)):
                vals = [res["methods"][name][key] for res in results if res["methods"][name].get(key) is not None]
                entry[key] = float(np.sum(vals)) if key == "seconds" else float(np.mean(vals))
    print("All methods, mean over rounds (each round the mean of its pairs):\n")
    print(markdown_table(merged, primary="psnr_inside"))
    print(f"\nConvention: {merged['convention']}\n\n{one_line()}  (wall {time.perf_counter() - start:.0f} s)")
    figure(model, files[0], other_dates, args.nfe, args.samples, Path(args.figure))
    print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
