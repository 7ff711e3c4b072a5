"""Score-based sparse-view / limited-angle CT vs. FBP and iterative reconstruction on real data (issues 4, 15).

**Headline (``--parts tune,unseen``, the default).** ``tune`` chooses the warm start's ``t0`` on
TRAINING slices of the prior's own scan (head CT z = 30, 75, outside its held-out range;
``evaluate(tuning=True)``): DDS warm-started from TV at each ``t0`` of ``--t0-grid`` at 23 and 8
views, the best mean PSNR wins. ``unseen`` then runs, on single CT slices of three other patients
and scanners (:mod:`unseen`: a head, a chest, an abdomen) and on held-out slices of the training
scan beside them: noise-free parallel-beam sinograms at 23 and 8 views over [0, 180),
``--unseen-crop`` (256) pixels at the native pixel size (the solvers on the prior's 0.96 mm grid
when the pixel differs by > 15 %: the projector at the new pixel size on the measured bins), FBP /
SART / TV against DDS as the mean of ``--samples`` samples at ``--nfe``, cold and warm-started
from TV. ``--quick``: 23 views only. ``--prior PATH`` compares priors.

Older parts (``--parts 1,2,3``), printed as markdown tables with the metric convention and the machine:

1. **Geometry matrix** -- 23 views and 8 views uniform over [0, 180), and a 120-degree arc
   (1 view/degree), noise-free parallel-beam sinograms simulated with the project's Radon operator
   from held-out slices of the real head CT (``head_ct_ddpm``'s ``data.holdout``): FBP, SART and
   TV (Chambolle-Pock) against the diffusion solvers (:func:`scorerecon.pipelines.evaluate.evaluate`,
   the same code as ``scorerecon evaluate --task ct``), each one sample at ``--nfe``, plus every
   data-consistent solver (dc, projection, DDS, prox) as the mean of ``--samples`` posterior
   samples (the MMSE estimate, ``--samples`` x NFE).
   Images are 128x128 central crops at the scan's native 0.96 mm pixels, the resolution the
   prior was trained at (``--downsample 2`` gives the whole slice at 1.9 mm, a scale it never saw).
2. **Few-step vs. 1000-NFE** -- 23 views: hard data consistency inside DDIM at ``--nfe`` steps and
   DDS against the same data step inside score-SDE's predictor-corrector sampler at 1000 NFE.
3. **3-D** -- 12 consecutive held-out slices (``--volume-slices``) at 23 views reconstructed as
   one volume: DDS and prox slice by slice against DDS with TV along z (DiffusionMBIR's
   ADMM data step, ``--tv-z``, chosen on held-out slices 60-63 that part 3 does not score), FBP
   and TV (2-D, per slice) for reference; with TV along z the data step is the same for DDS and
   prox, so one row, and its mean of ``--samples`` posterior samples.

    python benchmarks/ct.py [--prior checkpoints/head_ct_ddpm] [--quick] [--parts tune,unseen]
                            [--slices 50,58] [--crop 128] [--downsample 1] [--nfe 30] [--samples 4]
                            [--pc-nfe 1000] [--parts 1,2,3] [--volume-slices 48:60] [--tv-z 0.003]

The store ``results/stores/head_ct_hu.zarr`` (the priors' training store) is made by ``make
bench-quality`` (or ``scorerecon ingest data/demo/head_ct_hu.nii.gz -o results/stores/head_ct_hu.zarr``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from scorerecon.pipelines.evaluate import (
    evaluate,
    family_summary,
    few_vs_many_lines,
    markdown_table,
    mean_variants,
    parse_slices,
)
from scorerecon.pipelines.hardware import one_line

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/unseen.py
TUNE_SLICES = [30, 75]  # head-CT training slices (the prior holds out z in [44, 64))
BASELINES = ["fbp", "sart", "tv"]
GEOMETRIES = (("23 views over [0, 180)", {"views": 23}), ("8 views over [0, 180)", {"views": 8}),
              ("120-degree limited angle", {"arc": 120.0}))


def tune_t0(args: argparse.Namespace) -> float:
    """The warm start's t0 chosen on training slices of the prior's scan (never on evaluation slices)."""
    from unseen import tune_t0 as tune

    return tune("ct", args, TUNE_SLICES, {"23 views": {"views": 23}, "8 views": {"views": 8}}, "the prior's scan")


def tune_tv_xy(args: argparse.Namespace) -> float:
    """The in-plane TV weight of the data step chosen on TRAINING slices of the prior's scan (23 and 8 views)."""
    from unseen import tune_tv_xy as tune

    return tune("ct", args, TUNE_SLICES, {"23 views": {"views": 23}, "8 views": {"views": 8}}, "the prior's scan")


def unseen_subjects(args: argparse.Namespace, t0: float) -> None:
    """Per-patient rows on unseen CT slices, their mean, and held-out slices of the training scan."""
    from unseen import available, ct_subjects, diffusion_variants_tv, evaluate_subject, save_json, summary_table

    subjects, why = available(ct_subjects)
    if why:
        print(f"\n{why}")
    variants = diffusion_variants_tv(args.solver, args.samples, t0, "tv", args.tv_xy)
    payload = []
    view_list = [int(v) for v in args.views_list.split(",")] if args.views_list else ([23] if args.quick else [23, 8])
    for views in view_list:
        start = time.perf_counter()
        options = {"checkpoint": args.checkpoint, "views": views, "nfe": args.nfe, "seed": 0, "solvers": [],
                   "baselines": BASELINES, "variants": variants}
        results = []
        for subject in subjects:
            results.append(evaluate_subject(subject, crop=args.unseen_crop, **options))
            print(f"  {subject.name}: done ({time.perf_counter() - start:.0f} s)", flush=True)
        held = evaluate("ct", args.store, parse_slices(args.slices), crop=args.crop, downsample=args.downsample,
                        **options)
        held["subject"] = "head CT (the training scan)"
        results.append(held)
        print(f"\n#### Unseen patients, {views} views over [0, 180), PSNR (dB), HU windowed [-1000, 400]; diffusion = "
              f"{args.solver}{f' with in-plane TV {args.tv_xy:g} in the data step' if args.tv_xy else ''} mean of "
              f"{args.samples} samples x {args.nfe} NFE, warm = from TV at t0 = {t0:g}; prior "
              f"{Path(args.checkpoint).name}\n")
        print(summary_table(results, BASELINES, "tv"))
        print(f"\nWall {time.perf_counter() - start:.0f} s.", flush=True)
        payload.append({"views": views, "results": results})
        save_json(f"ct_unseen_{Path(args.checkpoint).name}{'_quick' if args.quick else ''}"
              f"{'_v' + args.views_list.replace(',', '_') if args.views_list else ''}.json",
              {"t0": t0, "runs": payload})


def matrix(args: argparse.Namespace) -> None:
    for title, geometry in GEOMETRIES:
        start = time.perf_counter()
        result = evaluate("ct", args.store, parse_slices(args.slices), checkpoint=args.checkpoint, nfe=args.nfe,
                          seed=0, solvers=args.solvers, crop=args.crop, downsample=args.downsample,
                          variants=mean_variants(args.samples), **geometry)
        p = result["params"]
        print(f"\n#### {title}, slices {p['slices']}, {p['image_shape'][0]}x{p['image_shape'][1]} px at "
              f"{p['pixel_size_mm']:.3g} mm\n")
        print(markdown_table(result))
        print(f"\n{family_summary(result)}. Wall {time.perf_counter() - start:.0f} s.", flush=True)


def few_vs_many(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    result = evaluate("ct", args.store, parse_slices(args.slices), checkpoint=args.checkpoint, nfe=args.nfe, seed=0,
                      solvers=["dc", "dds"], baselines=["fbp", "tv"], crop=args.crop, downsample=args.downsample,
                      views=23,
                      variants={f"dc_pc{args.pc_nfe}": {"solver": "dc", "nfe": args.pc_nfe, "sampler": "pc"}})
    print(f"\n#### Few-step vs. {args.pc_nfe}-NFE predictor-corrector (23 views, same prior and slices)\n")
    print(markdown_table(result))
    print("\n".join(few_vs_many_lines(result, f"dc_pc{args.pc_nfe}")))
    print(f"\nWall {time.perf_counter() - start:.0f} s.", flush=True)


def volume(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    tv_z = {"tv_z": args.tv_z}
    result = evaluate("ct", args.store, parse_slices(args.volume_slices), checkpoint=args.checkpoint, nfe=args.nfe,
                      seed=0, solvers=["dds", "prox"], baselines=["fbp", "tv"], crop=args.crop,
                      downsample=args.downsample, views=23,
                      variants={"dds_tvz": {"solver": "dds", **tv_z},  # replaces the data step: prox's is the same
                                f"dds_tvz_mean{args.samples}": {"solver": "dds", "samples": args.samples, **tv_z}})
    p = result["params"]
    print(f"\n#### 3-D: {len(p['slices'])} consecutive slices {p['slices'][0]}-{p['slices'][-1]} as one volume, 23 "
          f"views, {p['image_shape'][0]}x{p['image_shape'][1]} px; 2-D prior slice by slice vs. with TV along z "
          f"(`*_tvz`, lambda {args.tv_z:g}, DiffusionMBIR)\n")
    print(markdown_table(result))
    print(f"\n{family_summary(result)}. Wall {time.perf_counter() - start:.0f} s.", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default=str(ROOT / "results/stores/head_ct_hu.zarr"))
    parser.add_argument("--checkpoint", "--prior", dest="checkpoint", default=str(ROOT / "checkpoints/head_ct_ddpm"),
                        help="the prior (default: checkpoints/head_ct_ddpm)")
    parser.add_argument("--quick", action="store_true", help="unseen part: 23 views only")
    parser.add_argument("--views-list", default=None, help="unseen part: comma list of view counts (default 23,8)")
    parser.add_argument("--solver", default="dds", help="the diffusion solver of the unseen tables (default dds)")
    parser.add_argument("--t0", type=float, default=None, help="warm-start t0 (default: chosen by the tune part)")
    parser.add_argument("--t0-grid", default="0.1,0.2,0.3,0.5", help="t0 values the tune part tries")
    parser.add_argument("--tv-xy", type=float, default=None,
                        help="in-plane TV weight in the DDS data step of the unseen rows "
                             "(default: the tvxy part's choice, else 0 = plain DDS)")
    parser.add_argument("--tv-xy-grid", default="0.001,0.002,0.003", help="weights the tvxy part tries")
    parser.add_argument("--unseen-crop", type=int, default=256,
                        help="centre crop of the unseen 512^2 slices at their native pixel size (default 256)")
    parser.add_argument("--slices", default="50,58", help="held-out slices of the prior")
    parser.add_argument("--crop", type=int, default=128, help="central crop (pixels) at the native resolution")
    parser.add_argument("--downsample", type=int, default=1, help="average F x F pixels after cropping")
    parser.add_argument("--nfe", type=int, default=30)
    parser.add_argument("--samples", type=int, default=4, help="posterior samples averaged by the *_mean rows")
    parser.add_argument("--pc-nfe", type=int, default=1000)
    parser.add_argument("--solvers", default=None, help="comma list (default: all five)")
    parser.add_argument("--parts", default="tune,unseen",
                        help="tune = t0 on training slices, unseen = unseen patients + same scan; 1 = geometry "
                        "matrix, 2 = few vs many NFE, 3 = volume (held-out slices)")
    parser.add_argument("--volume-slices", default="48:60", help="consecutive held-out slices of part 3")
    parser.add_argument("--tv-z", type=float, default=3e-3,
                        help="TV-along-z weight of part 3; 3e-3 was the best of 3e-4..1e-2 (PSNR, then SSIM) on "
                             "held-out slices 60-63, which part 3 does not evaluate")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    args.solvers = None if args.solvers is None else args.solvers.split(",")
    torch.set_num_threads(args.threads)
    parts = {p.strip() for p in args.parts.split(",")}
    total = time.perf_counter()
    print(f"# benchmarks/ct.py ({time.strftime('%Y-%m-%d', time.gmtime())})\n\n`python {' '.join(sys.argv)}`\n\n"
          "Convention: HU clamped to [-1000, 400] and mapped to [0, 1], data range 1; PSNR over the slices, SSIM "
          "(skimage 7x7) per slice averaged; noise-free parallel-beam sinograms; `*` = best of its family by PSNR.")
    if "tvxy" in parts and args.tv_xy is None:
        args.tv_xy = tune_tv_xy(args)
    if "unseen" in parts:
        t0 = args.t0 if args.t0 is not None else (tune_t0(args) if "tune" in parts else 0.2)
        unseen_subjects(args, t0)
    elif "tune" in parts:
        tune_t0(args)
    parts = {int(p) for p in parts if p.isdigit()}
    if 1 in parts:
        matrix(args)
    if 2 in parts:
        few_vs_many(args)
    if 3 in parts:
        volume(args)
    print(f"\n{one_line()}  (total {time.perf_counter() - total:.0f} s)")


if __name__ == "__main__":
    main()
