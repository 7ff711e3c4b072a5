"""Score-based MRI reconstruction vs. compressed sensing on real data: unseen subjects first (issues 4, 15).

**Headline (``--parts tune,unseen``, the default).** ``tune`` chooses the warm start's ``t0`` on
TRAINING slices of the prior's own training volume (Colin27 z = 60, 120, outside its held-out
range; ``evaluate(tuning=True)``): DDS warm-started from TV at each ``t0`` of ``--t0-grid`` at
R = 4 and 8, the best mean PSNR wins. ``unseen`` then runs, on every unseen subject of
:mod:`unseen` (brain MR of other subjects and scanners, ``make unseen-data``) and on held-out
slices of the training subject beside them: 1 coil, random 1-D mask, R = 4 and 8, 128^2 centre
crop at the native pixel size (the solvers on the prior's pixel size when it differs by > 15 %),
zero-filled / TV / L1-wavelet against DDS as the mean of ``--samples`` posterior samples at
``--nfe`` each, from noise (cold) and warm-started from TV at ``t0``; per-subject rows, their
mean, the same-subject row. ``--quick``: one slice per subject, R = 4 only. ``--prior PATH``
compares priors.

Older parts (``--parts 1,2,3,4``), each printed as markdown tables with the metric convention and the machine:

1. **Undersampling matrix** -- R = 4 and R = 8, random and equispaced 1-D masks (fastMRI centre
   fractions 0.08 / 0.04), single-coil k-space simulated from held-out Colin27 T1 slices of the
   ``brain_ddpm`` prior: zero-filled, sigpy TV and L1-wavelet against the diffusion solvers
   (:func:`scorerecon.pipelines.evaluate.evaluate`, the same code as ``scorerecon evaluate``),
   each one sample at ``--nfe``, plus every data-consistent solver (dc, projection, DDS, prox) as
   the mean of ``--samples`` posterior samples (the MMSE estimate, ``--samples`` x NFE).
2. **Few-step vs. 1000-NFE** -- on R = 4 random: hard data consistency inside DDIM at ``--nfe``
   steps against the same data step inside score-SDE's predictor-corrector sampler at 1000 NFE
   (reverse diffusion + one Langevin corrector step, 500 steps), same prior, same slices.
3. **Real raw k-space** -- the twix GRE phantom (Siemens 3T, 2 coils, fully sampled), retro-
   spectively undersampled along ky (random 1-D, R = 3 and 4), against its fully sampled
   ESPIRiT-combined image (scaled so its 99.5th percentile is 1): zero-filled, TV, L1-wavelet
   (SENSE, ESPIRiT maps from the ACS block) and the diffusion solvers with the phase folded into
   the forward model. The CS lambdas were tuned on noise-free simulated brain slices; this
   phantom is measured (noisy) and out of the brain prior's distribution: it shows how both
   families transfer, not what either does when tuned for it.

4. **Multi-coil** -- 8 coils simulated from the same held-out slices (birdcage maps + a smooth
   phase; reconstruction with the true maps, and at R = 4 also with ESPIRiT maps from the ACS
   block), R = 4 and 8: SENSE zero-filled / TV / L1-wavelet against the diffusion solvers on real
   and imaginary parts (score-MRI), single samples and posterior means as in part 1.

    python benchmarks/mri.py [--prior checkpoints/brain_mr_ddpm] [--quick] [--parts tune,unseen]
                             [--slices 85,95] [--crop 128] [--nfe 30] [--samples 4] [--pc-nfe 1000]

The store ``results/stores/colin27_t1.zarr`` (the priors' training store) is made by ``make
bench-quality`` (or ``scorerecon ingest data/demo/colin27_t1.nii.gz -o results/stores/colin27_t1.zarr``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
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
TWIX = ROOT / "data" / "demo" / "twix_gre_phantom_2coil.dat"
TUNE_SLICES = [60, 120]  # Colin27 training slices (the priors hold out z in [80, 100))
BASELINES = ["zero_filled", "tv", "l1_wavelet"]


def tune_t0(args: argparse.Namespace) -> float:
    """The warm start's t0 chosen on training slices (never on evaluation slices)."""
    from unseen import tune_t0 as tune

    return tune("mri", args, TUNE_SLICES, {f"R={a:g}": {"accel": a, "mask": "random"} for a in (4.0, 8.0)},
                "the prior's training volume")


def tune_tv_xy(args: argparse.Namespace) -> float:
    """The in-plane TV weight of the data step chosen on training slices (R = 4 and 8)."""
    from unseen import tune_tv_xy as tune

    return tune("mri", args, TUNE_SLICES, {f"R={a:g}": {"accel": a, "mask": "random"} for a in (4.0, 8.0)},
                "the prior's training volume")


def unseen_subjects(args: argparse.Namespace, t0: float) -> None:
    """Per-subject rows on unseen brain MR, their mean, and held-out slices of the training subject."""
    from unseen import available, diffusion_variants_tv, evaluate_subject, mri_subjects, save_json, summary_table

    subjects, why = available(mri_subjects)
    if why:
        print(f"\n{why}")
    if args.quick:
        for s in subjects:
            mid = len(s.slices) // 2
            s.images, s.slices = s.images[mid:mid + 1], s.slices[mid:mid + 1]
    variants = diffusion_variants_tv(args.solver, args.samples, t0, "tv", args.tv_xy)
    same = parse_slices(args.slices)[:1] if args.quick else parse_slices(args.slices)
    payload = []
    accels = [float(a) for a in args.accels.split(",")] if args.accels else ([4.0] if args.quick else [4.0, 8.0])
    for accel in accels:
        start = time.perf_counter()
        results = []
        options = {"checkpoint": args.checkpoint, "accel": accel, "mask": "random", "nfe": args.nfe, "seed": 0,
                   "solvers": [], "baselines": BASELINES, "crop": args.crop, "variants": variants}
        for subject in subjects:
            results.append(evaluate_subject(subject, **options))
            print(f"  {subject.name}: done ({time.perf_counter() - start:.0f} s)", flush=True)
        held = evaluate("mri", args.store, same, **options)
        held["subject"] = "Colin27 (the training subject)"
        results.append(held)
        print(f"\n#### Unseen subjects, R={accel:g}, 1 coil, random 1-D mask, {args.crop}^2 crop, PSNR (dB); diffusion"
              f" = {args.solver}{f' with in-plane TV {args.tv_xy:g} in the data step' if args.tv_xy else ''} mean of "
              f"{args.samples} samples x {args.nfe} NFE, warm = from TV at t0 = {t0:g}; "
              f"prior {Path(args.checkpoint).name}\n")
        print(summary_table(results, BASELINES, "tv"))
        print(f"\nWall {time.perf_counter() - start:.0f} s.", flush=True)
        payload.append({"accel": accel, "results": results})
        save_json(f"mri_unseen_{Path(args.checkpoint).name}{'_quick' if args.quick else ''}"
              f"{'_R' + args.accels.replace(',', '_') if args.accels else ''}.json", {"t0": t0, "runs": payload})


def matrix(args: argparse.Namespace) -> None:
    for accel in (4.0, 8.0):
        for mask in ("random", "equispaced"):
            start = time.perf_counter()
            result = evaluate("mri", args.store, parse_slices(args.slices), checkpoint=args.checkpoint, accel=accel,
                              mask=mask, nfe=args.nfe, seed=0, solvers=args.solvers, crop=args.crop,
                              variants=mean_variants(args.samples))
            p = result["params"]
            print(f"\n#### R={accel:g}, {mask} 1-D mask (realised R {p['mask']['realised_acceleration']}), "
                  f"slices {p['slices']}, {p['image_shape'][0]}x{p['image_shape'][1]} px\n")
            print(markdown_table(result))
            print(f"\n{family_summary(result)}. Wall {time.perf_counter() - start:.0f} s.", flush=True)


def multicoil(args: argparse.Namespace) -> None:
    # ESPIRiT needs >= 8 ACS lines: R=8's centre fraction 0.04 leaves 5 at 128^2, so only R=4 runs both maps
    for accel, maps in ((4.0, "true"), (4.0, "espirit"), (8.0, "true")):
        start = time.perf_counter()
        result = evaluate("mri", args.store, parse_slices(args.slices), checkpoint=args.checkpoint, accel=accel,
                          mask="random", nfe=args.nfe, seed=0, solvers=args.solvers, crop=args.crop, coils=8,
                          coil_maps=maps, variants=mean_variants(args.samples))
        p = result["params"]
        which = "true maps" if maps == "true" else f"ESPIRiT maps from {p['coil_simulation']['calib_width']} ACS lines"
        print(f"\n#### 8 simulated coils (birdcage + smooth phase, {which}), R={accel:g} random 1-D, slices "
              f"{p['slices']}, {p['image_shape'][0]}x{p['image_shape'][1]} px; diffusion on real + imaginary parts\n")
        print(markdown_table(result))
        print(f"\n{family_summary(result)}. Wall {time.perf_counter() - start:.0f} s.", flush=True)


def few_vs_many(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    result = evaluate("mri", args.store, parse_slices(args.slices), checkpoint=args.checkpoint, accel=4.0,
                      mask="random", nfe=args.nfe, seed=0, solvers=["dc", "dds"], baselines=["tv"], crop=args.crop,
                      variants={f"dc_pc{args.pc_nfe}": {"solver": "dc", "nfe": args.pc_nfe, "sampler": "pc"}})
    print(f"\n#### Few-step vs. {args.pc_nfe}-NFE predictor-corrector (R=4 random, same prior and slices)\n")
    print(markdown_table(result))
    print("\n".join(few_vs_many_lines(result, f"dc_pc{args.pc_nfe}")))
    print(f"\nWall {time.perf_counter() - start:.0f} s.", flush=True)


def twix(args: argparse.Namespace) -> None:
    from scorerecon.modalities.io.kspace import read as read_kspace
    from scorerecon.modalities.metrics import image_metrics
    from scorerecon.modalities.mri.coils import espirit_maps, sens_combine
    from scorerecon.models.checkpoint import load_score_model
    from scorerecon.pipelines.reconstruct import _remove_oversampling
    from scorerecon.pipelines.tasks import reconstruct
    from scorerecon.pipelines.tasks.mri import acs_size, mri_baselines, mri_problem, phase_encode_mask

    ds = read_kspace([TWIX])["/"]
    raw = np.moveaxis(ds["kspace"].values, 1, 0).astype(np.complex64)  # (z, coil, ky, kx)
    factor = int(ds.attrs.get("readout_oversampling", 1) or 1)
    if factor > 1:
        raw = _remove_oversampling(raw, factor)
    full = torch.from_numpy(raw)
    full_maps = espirit_maps(full[0], calib_width=24)[None]
    reference = sens_combine(full, full_maps).abs().numpy()  # (1, 1?, H, W) fully sampled ESPIRiT-combined
    reference = reference.reshape(reference.shape[-2:])
    # scanner units are arbitrary (~1e-5 here); the baselines' lambdas were tuned on images scaled
    # to ~1, so put the data on that scale first (one global factor, applied to k-space and reference)
    scale = float(np.percentile(reference, 99.5))
    full, reference = full / scale, reference / scale
    model = load_score_model(args.checkpoint)
    model.eval()
    h, w = reference.shape
    for accel in (3.0, 4.0):
        mask = phase_encode_mask("random", (h, w), accel, seed=0, axis=-2)
        kspace = full * mask
        calib = min(24, *acs_size(mask))
        maps = espirit_maps(kspace[0], calib_width=calib)[None]
        rows: dict[str, dict[str, Any]] = {}
        for name, (img, secs) in mri_baselines(kspace, mask, maps).items():
            rows[name] = {"family": "classical", **image_metrics(reference, img.abs()[0, 0]), "nfe": 0,
                          "seconds": round(secs, 2)}
        problem = mri_problem(kspace, mask, model.card["data"]["normalization"], maps, "real", phase="auto",
                              intensity="auto")
        for solver in args.solvers or ("dc", "dds", "prox"):
            with torch.no_grad():
                rec = reconstruct(problem, model, solver, nfe=args.nfe, seed=0)
            rows[solver] = {"family": "diffusion", **image_metrics(reference, rec.image.abs()[0, 0]),
                            "nfe": rec.nfe, "seconds": round(rec.seconds, 2)}
        result = {"methods": rows}
        print(f"\n#### Real twix phantom, 2 coils, {h}x{w}, random 1-D along ky at R={accel:g} (realised "
              f"{float(mask.numel() / mask.sum()):.2f}), ACS {calib} lines; reference: fully sampled ESPIRiT-combined"
              f" magnitude\n")
        print(markdown_table(result))
        print(f"\n{family_summary(result)}.", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default=str(ROOT / "results/stores/colin27_t1.zarr"))
    parser.add_argument("--checkpoint", "--prior", dest="checkpoint", default=str(ROOT / "checkpoints/brain_mr_ddpm"),
                        help="the prior (default: checkpoints/brain_mr_ddpm)")
    parser.add_argument("--quick", action="store_true", help="unseen part: one slice per subject, R = 4 only")
    parser.add_argument("--accels", default=None, help="unseen part: comma list of R (default 4,8; --quick: 4)")
    parser.add_argument("--solver", default="dds", help="the diffusion solver of the unseen tables (default dds)")
    parser.add_argument("--t0", type=float, default=None, help="warm-start t0 (default: chosen by the tune part)")
    parser.add_argument("--t0-grid", default="0.1,0.2,0.3,0.5", help="t0 values the tune part tries")
    parser.add_argument("--tv-xy", type=float, default=None,
                        help="in-plane TV weight in the DDS data step of the unseen rows "
                             "(default: the tvxy part's choice, else 0 = plain DDS)")
    parser.add_argument("--tv-xy-grid", default="0.002,0.004,0.008", help="weights the tvxy part tries")
    parser.add_argument("--slices", default="85,95", help="held-out slices of the prior")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--nfe", type=int, default=30)
    parser.add_argument("--pc-nfe", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=4, help="posterior samples averaged by the *_mean rows")
    parser.add_argument("--solvers", default=None, help="comma list (default: all five; twix: dc,dds,prox)")
    parser.add_argument("--parts", default="tune,unseen",
                        help="tune = t0 on training slices, unseen = unseen subjects + same subject; 1 = R/mask "
                        "matrix, 2 = few vs many NFE, 3 = twix, 4 = simulated 8-coil (held-out slices)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    args.solvers = None if args.solvers is None else args.solvers.split(",")
    torch.set_num_threads(args.threads)
    parts = {p.strip() for p in args.parts.split(",")}
    total = time.perf_counter()
    print(f"# benchmarks/mri.py ({time.strftime('%Y-%m-%d', time.gmtime())})\n\n`python {' '.join(sys.argv)}`\n\n"
          "Convention (fastMRI): magnitude images; PSNR with data range = max of the reference; SSIM (skimage 7x7) "
          "per slice averaged; NMSE. Single-coil k-space simulated noise-free from the slices; `*` = best of its "
          "family by PSNR.")
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
        twix(args)
    if 4 in parts:
        multicoil(args)
    print(f"\n{one_line()}  (total {time.perf_counter() - total:.0f} s)")


if __name__ == "__main__":
    main()
