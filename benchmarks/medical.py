"""Score-based MRI / CT reconstruction vs. classical baselines on held-out real slices (issue 4).

Runs :func:`scorerecon.pipelines.evaluate.evaluate` on four settings and prints one markdown
table each, with the metric convention (DESIGN.md section 3) and the machine under it:

* MRI, Colin27 T1 (``results/stores/colin27_t1.zarr``), held-out axial slices of
  ``brain_ddpm``, single-coil k-space simulated from the real magnitude slice, random-1D masks
  at R = 4 and R = 8 (fastMRI centre fractions 0.08 / 0.04), seed 0;
* CT, head CT (``results/stores/head_ct_hu.zarr``), held-out slices of ``head_ct_ddpm``,
  noise-free sinograms, 60-view sparse view and 120-degree limited angle (1 view/degree).

CPU budget: the defaults (2 MRI slices centre-cropped to 128x128 at the native 1 mm -- the scale
the patch prior was trained at; 1 CT slice 2x2-averaged to 128x128; 30 / 20 NFE) take about ten
minutes on two busy CPU cores. More slices, larger images and more NFE are one flag each.

    python benchmarks/medical.py [--mri-slices 85,95] [--ct-slices 54] [--nfe-mri 30] [--nfe-ct 20]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from scorerecon.pipelines.evaluate import evaluate, markdown_table, parse_slices
from scorerecon.pipelines.hardware import one_line

ROOT = Path(__file__).resolve().parents[1]


def _summary(result: dict) -> str:
    best = {}
    for fam in ("classical", "diffusion"):
        items = {k: v for k, v in result["methods"].items() if v["family"] == fam}
        if items:
            name = max(items, key=lambda k: items[k]["psnr"])
            best[fam] = (name, items[name]["psnr"], items[name]["ssim"])
    if len(best) < 2:
        return ""
    (cn, cp, cs), (dn, dp, ds) = best["classical"], best["diffusion"]
    verdict = "beats" if dp > cp else "does not beat"
    return (f"best diffusion ({dn}, {dp:.2f} dB / SSIM {ds:.4f}) {verdict} best classical "
            f"({cn}, {cp:.2f} dB / SSIM {cs:.4f}) in PSNR")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mri-store", default=str(ROOT / "results/stores/colin27_t1.zarr"))
    parser.add_argument("--ct-store", default=str(ROOT / "results/stores/head_ct_hu.zarr"))
    parser.add_argument("--mri-slices", default="85,95")
    parser.add_argument("--ct-slices", default="54")
    parser.add_argument("--mri-crop", type=int, default=128)
    parser.add_argument("--ct-downsample", type=int, default=2)
    parser.add_argument("--nfe-mri", type=int, default=30)
    parser.add_argument("--nfe-ct", type=int, default=20)
    parser.add_argument("--solvers", default=None, help="comma list (default: all five)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json-dir", default=None, help="also write each result JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    solvers = None if args.solvers is None else args.solvers.split(",")
    runs = [
        ("MRI, R=4 random-1D", dict(task="mri", store=args.mri_store, slices=parse_slices(args.mri_slices), accel=4.0,
                                   mask="random", nfe=args.nfe_mri, crop=args.mri_crop)),
        ("MRI, R=8 random-1D", dict(task="mri", store=args.mri_store, slices=parse_slices(args.mri_slices), accel=8.0,
                                   mask="random", nfe=args.nfe_mri, crop=args.mri_crop)),
        ("CT, 60-view sparse view", dict(task="ct", store=args.ct_store, slices=parse_slices(args.ct_slices), views=60,
                                        nfe=args.nfe_ct, downsample=args.ct_downsample)),
        ("CT, 120 degree limited angle", dict(task="ct", store=args.ct_store, slices=parse_slices(args.ct_slices),
                                             arc=120.0, nfe=args.nfe_ct, downsample=args.ct_downsample)),
    ]
    total = time.perf_counter()
    for title, kwargs in runs:
        start = time.perf_counter()
        result = evaluate(**kwargs, seed=0, solvers=solvers)
        p = result["params"]
        print(f"\n### {title}: slices {p['slices']} of {Path(p['input']).name}, {p['image_shape'][0]}x"
              f"{p['image_shape'][1]} px at {p['pixel_size_mm']:.3g} mm, prior {Path(p['checkpoint']).name}, "
              f"NFE {p['nfe']}, seed 0\n")
        print(markdown_table(result))
        print(f"\n{result['convention']}. {_summary(result)}. Wall {time.perf_counter() - start:.0f} s.")
        if args.json_dir:
            out = Path(args.json_dir)
            out.mkdir(parents=True, exist_ok=True)
            name = title.split(",")[0].lower() + "_" + "".join(c for c in title.split(",")[1] if c.isalnum())
            (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{one_line()}  (total {time.perf_counter() - total:.0f} s)")


if __name__ == "__main__":
    main()
