"""How to split a slice's network evaluations between posterior samples and steps, chosen on TRAINING slices.

The unseen-subject targets allow 120 NFE per slice. The README's tables averaged 4 posterior
samples of 30 DDS steps; this script compares other splits of the same budget (and 120 in one
sample) on Colin27 TRAINING slices z = 60, 120 (128^2 crop, 1 coil, random 1-D mask, cold start,
brain_mr_ddpm), at R = 4 and 8, so the split the unseen benchmark uses is chosen without looking
at evaluation data. Prints one table.

    python benchmarks/mri_budget.py --threads 1
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SPLITS = ((1, 120), (2, 60), (4, 30), (6, 20), (8, 15), (12, 10), (16, 7), (24, 5))


def main() -> None:
    from scorerecon.pipelines.evaluate import evaluate

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default=str(ROOT / "results/stores/colin27_t1.zarr"))
    parser.add_argument("--prior", default=str(ROOT / "checkpoints/brain_mr_ddpm"))
    parser.add_argument("--accels", default="4,8")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    accels = [float(a) for a in args.accels.split(",")]
    rows: dict[tuple[int, int], dict[float, float]] = {}
    tv: dict[float, float] = {}
    for accel in accels:
        for samples, nfe in SPLITS:
            r = evaluate("mri", args.store, [60, 120], checkpoint=args.prior, accel=accel, mask="random", nfe=nfe,
                         samples=samples, solvers=["dds"], baselines=["tv"], crop=128, tuning=True,
                         warm_start="none")
            rows.setdefault((samples, nfe), {})[accel] = r["methods"]["dds"]["psnr"]
            tv[accel] = r["methods"]["tv"]["psnr"]
            print(f"  R={accel:g} {samples} x {nfe}: dds {rows[(samples, nfe)][accel]:.2f}", flush=True)
    print(f"\n#### DDS, samples x NFE per slice (120 NFE), Colin27 TRAINING slices 60, 120, 128^2, 1 coil, random 1-D, "
          f"cold, prior {Path(args.prior).name}; PSNR (dB), mean of the 2 slices\n")
    print("| samples x NFE | " + " | ".join(f"R = {a:g}" for a in accels) + " |")
    print("|" + "---|" * (1 + len(accels)))
    print("| TV | " + " | ".join(f"{tv[a]:.2f}" for a in accels) + " |")
    for (samples, nfe), by_accel in rows.items():
        best = all(by_accel[a] >= max(r[a] for r in rows.values()) for a in accels)
        print(f"| {samples} x {nfe}{' *' if best else ''} | " + " | ".join(f"{by_accel[a]:.2f}" for a in accels) + " |")
    print(f"\n{time.strftime('%Y-%m-%d')}, {platform.machine()}, torch {torch.__version__}, "
          f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
