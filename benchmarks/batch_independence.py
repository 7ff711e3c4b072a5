"""Does a slice's reconstruction depend on its batch mates? CT slice 54 alone vs together with 53.

Same seed, same settings, one head-CT slice reconstructed alone and in a batch with its
neighbour; the table gives the mean and max |difference| in HU of that slice, for every solver,
with one random generator per batch (the old seeding: slice 54's noise depended on what rode
with it) and with one stream per slice (``tasks.sample_seeds``: what ``reconstruct`` and
``evaluate`` run). What remains with per-slice streams is float32 rounding (batched convolutions
and the projector's multi-column sparse mat-mul sum in another order), amplified by the CG of
the hard-consistency solvers.

    python benchmarks/batch_independence.py [--size 128] [--views 23] [--nfe 3] [--threads 1]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from scorerecon.hardware import one_line
from scorerecon.models.checkpoint import load_score_model
from scorerecon.pipelines.evaluate import prepare_slices
from scorerecon.pipelines.tasks import SOLVERS, SliceModel, make_guidance, run_sampler, sample_seeds
from scorerecon.pipelines.tasks.ct import ct_geometry, ct_problem, simulate_sinogram

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=128, help="slice size after block means (256 / factor)")
    parser.add_argument("--views", type=int, default=23)
    parser.add_argument("--nfe", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    factor = 256 // args.size
    volume = np.asarray(nib.load(REPO / "data" / "demo" / "head_ct_hu.nii.gz").dataobj[:, :, 53:55], dtype=np.float32)
    hu = torch.from_numpy(prepare_slices(volume.transpose(2, 1, 0), None, factor, square=True))
    geometry = ct_geometry(hu.shape[-1], args.views)
    pixel_mm = 0.957 * factor
    model = load_score_model("head_ct_ddpm").eval()

    def run(index: list[int], solver: str, per_slice: bool) -> np.ndarray:
        problem = ct_problem(simulate_sinogram(hu[index], geometry, pixel_mm), geometry, pixel_mm,
                             model.card["data"]["normalization"])
        problem.slice_ids = [53 + i for i in index]
        spec = problem.spec(solver)
        guidance = make_guidance(solver, problem.operator, problem.y, spec, model)
        seed = sample_seeds(problem, 0, 0) if per_slice else 0
        with torch.no_grad():
            result = run_sampler(SliceModel(model), problem.shape, spec, guidance, args.nfe, seed, "cpu")
        return problem.to_physical(result.x)[:, 0].numpy()

    print(f"CT slice 54 alone vs with slice 53: {args.size}^2, {args.views} views, {args.nfe} NFE, seed 0; "
          "|difference| of slice 54 in HU")
    print("| solver | one generator per batch: mean | max | one stream per slice: mean | max |")
    print("|---|---|---|---|---|")
    for solver in [s for s in SOLVERS if s != "dds_tta"]:  # TTA shares one adapter across the batch by design
        cells = []
        for per_slice in (False, True):
            d = np.abs(run([0, 1], solver, per_slice)[1] - run([1], solver, per_slice)[0])
            cells += [f"{d.mean():.4g}", f"{d.max():.4g}"]
        print(f"| {solver} | " + " | ".join(cells) + " |")
    print(one_line("cpu"))


if __name__ == "__main__":
    main()
