"""Choose DDS's data-step weight for noisy k-space on TRAINING data: ``pipelines.tasks.mri.NOISE_WEIGHT``.

Real scans are noisy; DDS's default weight (``lam = 1e-2``) makes the data step trust every measured
sample almost exactly, which on the real twix phantom put diffusion 6.5 dB under TV. The rule
``lam = max(1e-2, w * sigma^2)`` (``sigma``: the k-space noise std in model units, estimated from
the k-space corners, :mod:`scorerecon.modalities.mri.noise`) needs one constant ``w``, chosen here
on Colin27 TRAINING slices (z = 60, 120, 128^2 crop) with complex Gaussian noise added to their
single-coil k-space at three levels around what the twix phantom has (sigma = 0.084), R = 3
random 1-D along ky, DDS 30 NFE, one sample: the ``w`` with the best mean PSNR over slices and
noise levels. Never run on evaluation data. Prints the table; ``--out`` also saves JSON.

    python benchmarks/noise_weight.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
COLIN = ROOT / "data" / "demo" / "colin27_t1.nii.gz"


def main() -> None:
    from scorerecon.modalities.metrics import image_metrics
    from scorerecon.modalities.mri.baselines import tv_recon
    from scorerecon.models.checkpoint import load_score_model
    from scorerecon.pipelines.evaluate import prepare_slices
    from scorerecon.pipelines.tasks import reconstruct
    from scorerecon.pipelines.tasks.mri import mri_problem, phase_encode_mask, simulate_singlecoil

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prior", default=str(ROOT / "checkpoints" / "brain_mr_ddpm"))
    parser.add_argument("--weights", default="0,30,100,300,1000")
    parser.add_argument("--sigmas", default="0.03,0.06,0.09")
    parser.add_argument("--nfe", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    weights = [float(w) for w in args.weights.split(",")]
    sigmas = [float(s) for s in args.sigmas.split(",")]
    model = load_score_model(args.prior)
    model.eval()
    volume = np.asarray(nib.load(COLIN).dataobj, dtype=np.float32)[:, :, [60, 120]].transpose(2, 1, 0)
    truth = torch.from_numpy(prepare_slices(volume, 128, 1, square=True))
    hi = float(np.percentile(truth.numpy(), 99.5))
    mask = phase_encode_mask("random", tuple(truth.shape[-2:]), 3.0, seed=0, axis=-2)
    clean = simulate_singlecoil(truth, torch.ones_like(mask))
    start = time.perf_counter()
    rows, table = [], {}
    for sigma in sigmas:
        gen = torch.Generator().manual_seed(1)
        std = sigma * hi / 2.0  # model units [-1, 1] <-> [0, hi]
        noise = torch.complex(torch.randn(clean.shape, generator=gen), torch.randn(clean.shape, generator=gen)) * std
        kspace = (clean + noise) * mask
        problem = mri_problem(kspace, mask, model.card["data"]["normalization"], intensity="auto", phase=None)
        estimated = float(problem.info["noise"]["kspace_std_model"])
        tv = tv_recon(kspace, mask, None).abs()[:, 0]
        psnr_tv = float(np.mean([image_metrics(truth[i].numpy(), tv[i].numpy())["psnr"] for i in range(2)]))
        for w in weights:
            lam = max(1e-2, w * estimated ** 2)
            with torch.no_grad():
                rec = reconstruct(problem, model, "dds", nfe=args.nfe, seed=0, lam=lam)
            image = rec.image.abs()[:, 0]
            psnr = float(np.mean([image_metrics(truth[i].numpy(), image[i].numpy())["psnr"] for i in range(2)]))
            table[(sigma, w)] = psnr
            rows.append({"sigma_added": sigma, "sigma_estimated": estimated, "weight": w, "lam": lam,
                         "psnr_dds": psnr, "psnr_tv": psnr_tv})
            print(f"  sigma {sigma:g} (estimated {estimated:.4f}) w {w:g} lam {lam:.3g}: dds {psnr:.2f} "
                  f"tv {psnr_tv:.2f}", flush=True)
    means = {w: float(np.mean([table[(s, w)] for s in sigmas])) for w in weights}
    best = max(means, key=means.get)
    print(f"\n#### DDS data-step weight on noisy k-space, Colin27 TRAINING slices 60, 120 (128^2), R = 3 random "
          f"1-D, {args.nfe} NFE x 1 sample, prior {Path(args.prior).name}; PSNR (dB), mean of the 2 slices\n")
    head = "| sigma added (estimated) | TV | " + " | ".join(f"w = {w:g}" for w in weights) + " |"
    print(head)
    print("|" + "---|" * (2 + len(weights)))
    for sigma in sigmas:
        r = [x for x in rows if x["sigma_added"] == sigma]
        print(f"| {sigma:g} ({r[0]['sigma_estimated']:.4f}) | {r[0]['psnr_tv']:.2f} | "
              + " | ".join(f"{table[(sigma, w)]:.2f}" for w in weights) + " |")
    print("| **mean** |  | " + " | ".join(f"{means[w]:.2f}" for w in weights) + " |")
    print(f"\nbest w = {best:g} (w = 0: the default lam = 1e-2 everywhere). "
          f"{time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{time.perf_counter() - start:.0f} s")
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "means": means, "best": best}, indent=1))


if __name__ == "__main__":
    main()
