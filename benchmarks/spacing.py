"""Pixel-spacing check (issue 15): the solvers on the prior's pixel grid vs on the input's, same unseen slice.

The unseen head-CT slice of :mod:`unseen` (0.43 mm, the prior trained at 0.96 mm), 23 views, 256^2
crop: TV and DDS as the mean of 4 posterior samples x 30 NFE (cold), with ``evaluate``'s
resampling to the prior's grid (115^2 at 0.96 mm, the default) and without it (256^2 at 0.43 mm).

    python benchmarks/spacing.py [--prior checkpoints/head_ct_ddpm] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from unseen import ct_subjects, evaluate_subject  # noqa: E402

from scorerecon.pipelines.evaluate import markdown_table  # noqa: E402
from scorerecon.pipelines.hardware import one_line  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prior", default=str(Path(__file__).resolve().parents[1] / "checkpoints/head_ct_ddpm"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    subject = ct_subjects()[0]
    print(f"# benchmarks/spacing.py ({time.strftime('%Y-%m-%d', time.gmtime())})\n\n`python {' '.join(sys.argv)}`")
    for resample in (True, False):
        start = time.perf_counter()
        result = evaluate_subject(subject, checkpoint=args.prior, views=23, nfe=30, seed=0, solvers=[],
                                  baselines=["tv"], crop=256, resample=resample,
                                  variants={"dds_mean4": {"solver": "dds", "samples": 4, "warm_start": "none"}})
        print(f"\n#### {subject.name}, 23 views, resample={resample}: {result['params']['grid']['note']}\n")
        print(markdown_table(result))
        print(f"\nWall {time.perf_counter() - start:.0f} s.", flush=True)
    print(f"\n{one_line()}")


if __name__ == "__main__":
    main()
