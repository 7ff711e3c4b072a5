"""Pixel-spacing check (issue 15): the solvers on the prior's pixel grid vs on the input's, same unseen slice.

``ct``: the unseen head-CT slice of :mod:`unseen` (0.43 mm; head_ct_ddpm trained at 0.96 mm), 23
views, 256^2 crop: TV and DDS as the mean of 4 posterior samples x 30 NFE (cold), on the prior's
grid (115^2 at 0.96 mm, a coarser grid) and on the input's (256^2 at 0.43 mm). ``mri``: the middle
slice of the unseen 2 mm ITK T1 (brain_mr_ddpm trained at 1 mm), R = 4, 128^2: on the prior's grid
(256^2 at 1 mm, a finer grid) and on the input's.

    python benchmarks/spacing.py [--cases ct,mri] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from unseen import ct_subjects, evaluate_subject, mri_subjects  # noqa: E402

from scorerecon.pipelines.evaluate import markdown_table  # noqa: E402
from scorerecon.pipelines.hardware import one_line  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="ct,mri")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(__file__).resolve().parents[1]
    print(f"# benchmarks/spacing.py ({time.strftime('%Y-%m-%d', time.gmtime())})\n\n`python {' '.join(sys.argv)}`")
    cases = {"ct": (ct_subjects()[0], {"checkpoint": str(root / "checkpoints/head_ct_ddpm"), "views": 23,
                                       "crop": 256, "baselines": ["tv"]}),
             "mri": (mri_subjects()[1], {"checkpoint": str(root / "checkpoints/brain_mr_ddpm"), "accel": 4.0,
                                         "crop": 128, "baselines": ["tv"]})}
    for case in args.cases.split(","):
        subject, options = cases[case]
        if case == "mri":  # the middle slice
            subject.images, subject.slices = subject.images[1:2], subject.slices[1:2]
        for resample in ("always", False):  # the prior's grid (coarser for ct, finer for mri) vs the input's
            start = time.perf_counter()
            result = evaluate_subject(subject, nfe=30, seed=0, solvers=[], resample=resample, **options,
                                      variants={"dds_mean4": {"solver": "dds", "samples": 4, "warm_start": "none"}})
            print(f"\n#### {subject.name}, {case}, resample={resample}: {result['params']['grid']['note']}\n")
            print(markdown_table(result))
            print(f"\nWall {time.perf_counter() - start:.0f} s.", flush=True)
    print(f"\n{one_line()}")


if __name__ == "__main__":
    main()
