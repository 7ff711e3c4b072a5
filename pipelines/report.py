"""``scorerecon report``: one self-contained HTML page summarising a workflow run.

What it shows, for an output directory ``OUTDIR`` of the workflow (``results/demo``):

* one panel per ingested store (``OUTDIR/stores/*.zarr``, every group): a preview image (three
  orthogonal middle slices of a ``(z, y, x)`` volume; an RGB composite of the first three bands,
  or of the bands named R, G, B, of a ``(band, y, x)`` raster; for raw ``kspace`` the
  root-sum-of-squares magnitude image of the middle slice via the project's FFT convention,
  next to the log-magnitude k-space), with the store's variables, geometry and provenance
  (the same summary as ``scorerecon info``);
* the sample grids ``OUTDIR/samples/*.png``, embedded as they are;
* the per-rule timings and peak memory from Snakemake's ``benchmark:`` files
  (``OUTDIR/benchmarks/**/*.tsv``), as a table and a bar chart;
* per evaluation (``OUTDIR/eval/*.json``, ``{"task", "convention", "data", "params", "methods":
  {NAME: {"family", <metrics>, "nfe", "seconds"}}}``) its metric table and, from the picture set
  ``evaluate --images`` wrote beside it (``eval/<task>.npz``, :mod:`scorerecon.pipelines.panels`),
  one figure: the measurement and the input (zero-filled MRI, FBP, the degraded photo, the
  low-resolution MS), the best classical result, every diffusion method, the reference, their
  |error| maps on one common scale and the posterior std where samples were averaged, with a
  caption stating the windowing and whether the data were unseen;
* per reconstruction (``OUTDIR/recon/*.zarr``): the middle slice beside the slice of the input it
  came from (when the measurement was simulated from it: then also the |difference|), the
  posterior std, and the files it was exported to (``OUTDIR/recon/exports/<task>/<format>``:
  NIfTI / DICOM / GeoTIFF read back for their geometry);
* the hardware the GPU steps were given (``OUTDIR/hardware.json``, written by
  ``scorerecon report --hardware`` inside a GPU job).

Why one file: a report is mailed, archived next to the outputs, or opened from a cluster's
scratch space, so every image is a base64 PNG in the page and nothing is fetched when it is
opened. Sections whose inputs do not exist yet are left out, so the page grows as tasks land.
Reading stays bounded in memory: previews select single slices (and stride large rasters) before
anything is computed.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import csv
import datetime
import html
import io
import json
import math
import os
import platform
import socket
import sys
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from scorerecon import __version__
from scorerecon.pipelines.errors import InputError
from scorerecon.pipelines.options import output_file

PREVIEW_MAX_PIXELS = 1024  # longest side of a preview, in samples (larger rasters are strided)
SLURM_ENV = ("SLURM_JOB_ID", "SLURM_JOB_NAME", "SLURM_JOB_PARTITION", "SLURM_JOB_NODELIST", "SLURM_CPUS_PER_TASK",
             "SLURM_MEM_PER_NODE", "SLURM_JOB_GPUS", "SLURM_GPUS_ON_NODE", "CUDA_VISIBLE_DEVICES")

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
header{background:#1f3b5a;color:#fff;padding:18px 28px}
header h1{margin:0 0 4px 0;font-size:24px} header p{margin:0;opacity:.85;font-size:13px}
nav{padding:8px 28px;background:#e3e8ef;font-size:14px} nav a{margin-right:16px;color:#1f3b5a}
main{padding:8px 28px 40px}
section{margin-top:22px} h2{border-bottom:2px solid #1f3b5a;padding-bottom:4px;color:#1f3b5a}
.panel{background:#fff;border:1px solid #d5dbe3;border-radius:6px;padding:12px 16px;margin:12px 0}
.panel h3{margin:0 0 8px 0;font-size:17px}
.panel img{max-width:100%;height:auto;display:block;margin:6px 0}
.grid{display:flex;flex-wrap:wrap;gap:12px} .grid figure{margin:0;background:#fff;padding:8px;
 border:1px solid #d5dbe3;border-radius:6px} figcaption{font-size:13px;text-align:center}
table{border-collapse:collapse;font-size:13px;margin:6px 0} th,td{border:1px solid #c9d1dc;padding:3px 8px}
th{background:#e8edf3;text-align:left} td.num{text-align:right;font-variant-numeric:tabular-nums}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
pre{background:#f0f2f5;padding:6px;border-radius:4px;overflow-x:auto;margin:4px 0}
.error{color:#a40000;font-weight:600} .muted{color:#5a6372;font-size:13px}
figure.pictures{margin:8px 0} figure.pictures figcaption{text-align:left;color:#3a4352;max-width:1100px}
"""


# ------------------------------------------------------------------------------- small helpers
def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _figure_png(fig: Figure) -> bytes:
    """Render a matplotlib figure (no pyplot, so no GUI backend and no global state) to PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi, bbox_inches="tight")
    return buffer.getvalue()


def _img(png: bytes, alt: str) -> str:
    return f'<img src="{_png_data_uri(png)}" alt="{_esc(alt)}">'


def _fmt(value: Any) -> str:
    """Numbers to a readable precision; everything else as text."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:.4g}" if abs(value) < 10 else f"{value:.2f}"
    return str(value)


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[bool] | None = None) -> str:
    numeric = numeric or [False] * len(header)
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(f'<td class="num">{_esc(_fmt(v))}</td>' if num else f"<td>{_esc(_fmt(v))}</td>"
                        for v, num in zip(row, numeric, strict=True))
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _spacing(ds: xr.Dataset | xr.DataArray, dim: str) -> float:
    """Sample spacing along ``dim`` from its coordinate (mm for medical data), 1 if unknown."""
    if dim in ds.coords and ds.sizes.get(dim, 0) > 1:
        coord = np.asarray(ds.coords[dim].values[:2])
        if np.issubdtype(coord.dtype, np.number):
            step = abs(float(coord[1]) - float(coord[0]))
            if step > 0 and math.isfinite(step):
                return step
    return 1.0


def _stretch(plane: np.ndarray, nodata: Any = None) -> np.ndarray:
    """Scale to [0, 1] between the 1st and 99th percentile of the valid samples."""
    plane = np.asarray(plane, dtype=np.float64)
    valid = np.isfinite(plane)
    if nodata is not None:
        valid &= plane != nodata
    if not valid.any():
        return np.zeros_like(plane)
    lo, hi = np.percentile(plane[valid], [1, 99])
    if hi <= lo:
        lo, hi = float(plane[valid].min()), float(plane[valid].max())
    out = (plane - lo) / (hi - lo) if hi > lo else np.zeros_like(plane)
    out[~valid] = 0.0
    return np.clip(out, 0.0, 1.0)


def _stride(size: int) -> int:
    return max(1, math.ceil(size / PREVIEW_MAX_PIXELS))


# ------------------------------------------------------------------------------------ previews
def _panels_figure(images: list[tuple[str, np.ndarray, float, str]]) -> bytes:
    """One row of images: ``(title, array (h, w) or (h, w, 3) in [0, 1], aspect, origin)``."""
    widths = [img.shape[1] / img.shape[0] / aspect for _, img, aspect, _ in images]
    height = 3.6
    fig = Figure(figsize=(max(3.0, sum(w * height for w in widths) + 0.4 * len(images)), height + 0.4), dpi=100)
    axes = fig.subplots(1, len(images), squeeze=False, gridspec_kw={"width_ratios": widths})[0]
    for ax, (title, img, aspect, origin) in zip(axes, images, strict=True):
        ax.imshow(img, cmap="gray", vmin=0.0, vmax=1.0, aspect=aspect, origin=origin, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    return _figure_png(fig)


def _volume_preview(var: xr.DataArray) -> bytes:
    """Axial, coronal and sagittal middle slices of a (z, y, x) volume (RAS: origin lower-left)."""
    extra = {d: var.sizes[d] // 2 for d in var.dims if d not in ("z", "y", "x")}
    var = var.isel(extra) if extra else var
    nz, ny, nx = var.sizes["z"], var.sizes["y"], var.sizes["x"]
    dz, dy, dx = (_spacing(var, d) for d in ("z", "y", "x"))
    views = [("axial", "z", nz, dy / dx)]
    if nz > 1:
        views += [("coronal", "y", ny, dz / dx), ("sagittal", "x", nx, dz / dy)]
    planes = []
    for name, dim, n, aspect in views:
        plane = var.isel({dim: n // 2})
        rest = [d for d in ("z", "y", "x") if d != dim]
        plane = plane.transpose(*rest)
        steps = {d: _stride(plane.sizes[d]) for d in rest}
        plane = plane.isel({d: slice(None, None, s) for d, s in steps.items()})
        aspect *= steps[rest[0]] / steps[rest[1]]
        values = np.asarray(plane.values)
        if np.iscomplexobj(values):
            values = np.abs(values)
        planes.append((f"{name} ({dim}={n // 2})", _stretch(values), aspect, "lower"))
    return _panels_figure(planes)


def _raster_preview(var: xr.DataArray) -> bytes:
    """RGB composite (bands R, G, B; natural colour B04/B03/B02; else the first three) or one grey band."""
    extra = {d: var.sizes[d] // 2 for d in var.dims if d not in ("band", "y", "x")}
    var = var.isel(extra) if extra else var
    var = var.isel(y=slice(None, None, _stride(var.sizes["y"])), x=slice(None, None, _stride(var.sizes["x"])))
    names = [str(b) for b in var.coords["band"].values] if "band" in var.coords else []
    natural_colour = ("B04", "B03", "B02")  # red, green, blue on both Landsat-8 OLI and Sentinel-2 MSI
    if all(c in names for c in ("R", "G", "B")):
        index = [names.index(c) for c in ("R", "G", "B")]
    elif all(c in names for c in natural_colour):
        index = [names.index(c) for c in natural_colour]
    elif var.sizes["band"] >= 3:
        index = [0, 1, 2]
    else:
        index = [0]
    picked = var.isel(band=index)
    values = np.asarray(picked.transpose("band", "y", "x").values)
    label = ", ".join(names[i] if names else str(i) for i in index)
    nodata = var.attrs.get("nodata", var.attrs.get("_FillValue"))
    if values.dtype == np.uint8 and names and all(c in names for c in ("R", "G", "B")):
        image = values.transpose(1, 2, 0) / 255.0  # an 8-bit photo: show it as it is
        title = f"RGB ({label})"
    elif len(index) == 3:
        image = np.stack([_stretch(band, nodata) for band in values], axis=-1)
        title = f"composite of bands {label} (1-99 % stretch)"
    else:
        image = _stretch(values[0], nodata)
        title = f"band {label} (1-99 % stretch)"
    return _panels_figure([(title, image, 1.0, "upper")])


def _kspace_preview(var: xr.DataArray, readout_oversampling: float = 1.0) -> bytes:
    """Root-sum-of-squares magnitude image of the middle slice, and its log-magnitude k-space.

    With readout oversampling (Siemens twix records the factor), the image is cropped to the
    central ``1 / factor`` of x, as a scanner does, so the object shows its true shape.
    """
    from scorerecon.modalities.io.kspace import kspace_to_image

    extra = {d: (var.sizes[d] // 2) for d in var.dims if d not in ("coil", "ky", "kx")}
    k = var.isel(extra) if extra else var
    if "coil" not in k.dims:
        k = k.expand_dims("coil")
    k = np.asarray(k.transpose("coil", "ky", "kx").values).astype(np.complex64)
    image = np.sqrt(np.sum(np.abs(kspace_to_image(k)) ** 2, axis=0))
    if readout_oversampling > 1:
        keep = int(round(image.shape[-1] / readout_oversampling))
        start = (image.shape[-1] - keep) // 2
        image = image[:, start:start + keep]
    kmag = np.log1p(np.sqrt(np.sum(np.abs(k) ** 2, axis=0)) / max(float(np.abs(k).max()), 1e-30) * 1e4)
    where = ", ".join(f"{d}={i}" for d, i in extra.items())
    return _panels_figure([
        (f"|image| RSS of {k.shape[0]} coil(s) ({where})", _stretch(image), 1.0, "upper"),
        ("log |k-space|", _stretch(kmag), 1.0, "upper"),
    ])


def preview_png(ds: xr.Dataset) -> tuple[bytes, str]:
    """A preview of a store group's main variable and the name of that variable."""
    name = next((n for n in ("image", "kspace") if n in ds.data_vars), None) or str(next(iter(ds.data_vars)))
    var = ds[name]
    dims = set(var.dims)
    if name == "kspace" or {"ky", "kx"} <= dims:
        try:
            oversampling = float(ds.attrs.get("readout_oversampling", 1.0))
        except (TypeError, ValueError):
            oversampling = 1.0
        return _kspace_preview(var, oversampling), name
    if {"z", "y", "x"} <= dims:
        return _volume_preview(var), name
    if {"band", "y", "x"} <= dims:
        return _raster_preview(var), name
    # anything else: the middle 2D plane of the last two dims
    lead = {d: var.sizes[d] // 2 for d in var.dims[:-2]}
    plane = var.isel(lead) if lead else var
    plane = plane.isel({d: slice(None, None, _stride(plane.sizes[d])) for d in plane.dims})
    values = np.asarray(plane.values)
    values = np.abs(values) if np.iscomplexobj(values) else values
    return _panels_figure([(f"{name} {tuple(var.dims[-2:])}", _stretch(values), 1.0, "upper")]), name


# -------------------------------------------------------------------------------------- stores
def _store_panel(path: Path) -> str:
    """The HTML panel of one store: per group a preview, its variables, geometry and provenance."""
    from scorerecon.modalities.io.store import open_store
    from scorerecon.pipelines.info import describe

    anchor = f"store-{_esc(path.stem)}"
    try:
        summary = describe(path)
    except InputError as exc:
        return (f'<div class="panel" id="{anchor}"><h3>{_esc(path.name)}</h3>'
                f'<p class="error">{_esc(exc.one_line())}</p></div>')
    parts = [f'<div class="panel" id="{anchor}"><h3>{_esc(path.name)}</h3>']
    for group, info in summary["groups"].items():
        if len(summary["groups"]) > 1:
            parts.append(f"<h4>group {_esc(group)}</h4>")
        try:
            png, _ = preview_png(open_store(path, group))
            parts.append(_img(png, f"preview of {path.name} {group}"))
        except (InputError, ValueError, KeyError, ImportError, OSError) as exc:
            parts.append(f'<p class="error">no preview: {_esc(type(exc).__name__)}: {_esc(exc)}</p>')
        rows = [(name, " × ".join(map(str, v["shape"])), ", ".join(v["dims"]), v["dtype"],
                 " × ".join(str(c[0]) for c in v["chunks"]) if v["chunks"] else "-")
                for name, v in info["variables"].items()]
        parts.append(_table(["variable", "shape", "dims", "dtype", "chunk"], rows))
        geometry = info["geometry"]
        if geometry:
            parts.append("<p><b>Geometry</b></p>")
            parts.append(_table(["key", "value"], [(k, _compact(v)) for k, v in geometry.items()]))
        prov = info["provenance"]
        if prov:
            parts.append(f"<p><b>Provenance</b>: reader <code>{_esc(prov.get('reader', '?'))}</code> "
                         f"{_esc(prov.get('reader_version', ''))}, scorerecon "
                         f"{_esc(prov.get('scorerecon_version', '?'))}</p>")
            sources = prov.get("source_files", [])
            parts.append(_table(["source", "bytes", "sha256"],
                                [(Path(s.get("path", "?")).name, s.get("bytes"), str(s.get("sha256", ""))[:16] + "…")
                                 for s in sources[:20]], numeric=[False, True, False]))
            if len(sources) > 20:
                parts.append(f'<p class="muted">… and {len(sources) - 20} more source files</p>')
    parts.append(_exports_table(path.parent.parent / "exports" / path.stem))
    parts.append("</div>")
    return "".join(parts)


def _exports_table(folder: Path) -> str:
    """A store's or reconstruction's exports (``<folder>/<format>/...``), read back for their geometry."""
    formats = sorted(d for d in folder.glob("*") if d.is_dir())
    rows = [(fmt.name, *row) for fmt in formats for row in describe_export(fmt)]
    if not rows:
        return ""
    return "<p><b>Exported to</b></p>" + _table(["format", "file", "kind", "geometry (read back)"], rows)


def _compact(value: Any) -> str:
    if isinstance(value, list) and value and all(isinstance(r, list) for r in value):
        return "[" + ", ".join("[" + ", ".join(_fmt(x) for x in row) + "]" for row in value) + "]"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(x) for x in value) + "]"
    return _fmt(value)


def find_stores(outdir: Path) -> list[Path]:
    """Complete-looking stores of a run (a write's ``.NAME.partial-xxxx`` staging sibling is skipped)."""
    return sorted(p for p in (outdir / "stores").glob("*.zarr") if p.is_dir() and not p.name.startswith("."))


# ---------------------------------------------------------------------------------- benchmarks
def read_benchmarks(outdir: Path) -> list[dict[str, Any]]:
    """Snakemake ``benchmark:`` TSVs as rows ``{step, target, seconds, max_rss_mb, cpu_seconds}``.

    A file holds one line per repeat; seconds and CPU time are averaged, peak memory is the max.
    ``NA`` (a job too short to sample) becomes ``None``.
    """
    root = outdir / "benchmarks"
    rows = []
    for path in sorted(root.rglob("*.tsv")):
        try:
            with open(path, newline="") as handle:
                records = list(csv.DictReader(handle, delimiter="\t"))
        except (OSError, csv.Error):
            continue
        if not records:
            continue

        def column(key: str, records: list[dict[str, str]] = records) -> list[float]:
            values = []
            for record in records:
                with contextlib.suppress(TypeError, ValueError):
                    values.append(float(record.get(key, "NA")))
            return values

        seconds, rss, cpu = column("s"), column("max_rss"), column("cpu_time")
        rel = path.relative_to(root)
        rows.append({
            "step": rel.parts[0] if len(rel.parts) > 1 else path.stem,
            "target": str(rel.with_suffix("")) if len(rel.parts) > 1 else "",
            "seconds": float(np.mean(seconds)) if seconds else None,
            "max_rss_mb": float(np.max(rss)) if rss else None,
            "cpu_seconds": float(np.mean(cpu)) if cpu else None,
        })
    return rows


def _benchmark_section(rows: list[dict[str, Any]]) -> str:
    table = _table(["step", "target", "wall s", "max RSS MB", "CPU s"],
                   [(r["step"], r["target"].split("/", 1)[-1], r["seconds"], r["max_rss_mb"], r["cpu_seconds"])
                    for r in rows], numeric=[False, False, True, True, True])
    timed = [r for r in rows if r["seconds"] is not None]
    total = sum(r["seconds"] for r in timed)
    chart = ""
    if timed:
        labels = [f"{r['step']}: {r['target'].split('/', 1)[-1]}" if r["target"] else r["step"] for r in timed]
        fig = Figure(figsize=(8, 0.9 + 0.28 * len(timed)), dpi=100)
        ax = fig.subplots()
        steps = sorted({r["step"] for r in timed})
        colours = {s: f"C{i % 10}" for i, s in enumerate(steps)}
        ax.barh(range(len(timed)), [r["seconds"] for r in timed], color=[colours[r["step"]] for r in timed])
        ax.set_yticks(range(len(timed)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("wall-clock seconds")
        ax.grid(axis="x", alpha=0.3)
        chart = _img(_figure_png(fig), "wall-clock seconds per job")
    return (f'<p class="muted">{len(rows)} jobs; {total:.1f} s of job wall-clock time in all '
            f"(jobs may have run in parallel). From Snakemake's benchmark files.</p>{chart}{table}")


# ---------------------------------------------------------------------------------- evaluation
def read_evaluations(outdir: Path) -> list[tuple[Path, dict[str, Any] | str]]:
    """Each ``eval/*.json`` with its parsed content, or an error message if it is not valid."""
    found: list[tuple[Path, dict[str, Any] | str]] = []
    for path in sorted((outdir / "eval").glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            found.append((path, f"unreadable: {exc}"))
            continue
        if not isinstance(data, dict) or not isinstance(data.get("methods"), dict):
            found.append((path, 'not an evaluation result (needs a "methods" object)'))
            continue
        found.append((path, data))
    return found


def _evaluation_panel(path: Path, data: dict[str, Any] | str) -> str:
    if isinstance(data, str):
        return f'<div class="panel"><h3>{_esc(path.name)}</h3><p class="error">{_esc(data)}</p></div>'
    methods: dict[str, dict[str, Any]] = {str(k): v for k, v in data["methods"].items() if isinstance(v, dict)}
    metrics: list[str] = []
    for result in methods.values():
        for key in result:
            if key not in ("family", "nfe", "seconds") and key not in metrics:
                metrics.append(key)
    header = ["method", "family", *metrics, "nfe", "seconds"]
    rows = [(name, r.get("family", ""), *(r.get(m) for m in metrics), r.get("nfe"), r.get("seconds"))
            for name, r in methods.items()]
    numeric = [False, False, *([True] * (len(metrics) + 2))]
    params = data.get("params")
    npz = path.with_suffix(".npz")
    label = data.get("data") or (params.get("data") if isinstance(params, dict) else None)
    return (f'<div class="panel" id="eval-{_esc(path.stem)}"><h3>{_esc(data.get("task", path.stem))}</h3>'
            + (f'<p><b>Data</b>: {_esc(label)}</p>' if label else "")
            + f'<p><b>Convention</b>: {_esc(data.get("convention", "not stated"))}</p>'
            + (_pictures(npz, methods, label) if npz.is_file() else "")
            + ("<details><summary>parameters</summary><pre>"
               f"{_esc(json.dumps(params, indent=1, sort_keys=True))}</pre></details>" if params else "")
            + _table(header, rows, numeric) + f'<p class="muted">from {_esc(path.name)}</p></div>')


# ------------------------------------------------------------------------------------ pictures
def _display(panels: Any, image: np.ndarray, role: str) -> np.ndarray:
    """An item as imshow shows it: grey ``(h, w)`` or RGB ``(h, w, 3)`` in ``[0, 1]`` on the set's window."""
    meta = panels.meta
    if role == "measurement":  # its own grey scale (mask, sinogram, pan)
        return _stretch(image if image.ndim == 2 else image.mean(axis=-1))
    if panels.kind == "rgb":
        return np.clip(image, 0.0, 1.0)
    if panels.kind == "multispectral":
        lo, hi = (np.asarray(v, dtype=np.float64) for v in meta["window"])
        rgb = image[..., meta["rgb"]] if image.ndim == 3 else image[..., None]
        return np.clip((rgb - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0, 1.0)
    lo, hi = meta.get("window", (float(np.nanmin(image)), float(np.nanmax(image))))
    plane = image if image.ndim == 2 else image.mean(axis=-1)
    return np.clip((plane - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)


def _metric_line(name: str, methods: dict[str, dict[str, Any]] | None, primary: str | None) -> str:
    result = (methods or {}).get(name)
    if not result:
        return ""
    keys = [k for k in (primary, "psnr", "ssim") if k and isinstance(result.get(k), (int, float))]
    seen: list[str] = []
    for k in keys:
        if k not in seen:
            seen.append(k)
    parts = [f"{result[k]:.2f} dB" if k == "psnr" else f"{k.upper()} {_fmt(float(result[k]))}" for k in seen[:2]]
    return " · ".join(parts)


def _robust_top(maps: list[np.ndarray]) -> float:
    tops = [float(np.percentile(m[np.isfinite(m)], 99)) for m in maps if np.isfinite(m).any()]
    top = float(np.median(tops)) if tops else 1.0
    return top if top > 0 else 1.0


def panels_figure(panels: Any, methods: dict[str, dict[str, Any]] | None = None) -> tuple[bytes, str]:
    """The picture set as one PNG (images; |error| on one scale; posterior std) and the error scale's text."""
    import textwrap

    items = panels.items
    reference = panels.reference()
    errors = [it.error for it in items]  # |error| computed by the picture set at full precision
    stds = [None if it.std is None else (it.std.mean(axis=-1) if it.std.ndim == 3 else it.std) for it in items]
    has_err, has_std = any(e is not None for e in errors), any(s is not None for s in stds)
    rows = 1 + has_err + has_std
    cell = min(4.0, max(2.3, 10.0 / len(items)))  # few pictures (a reconstruction): larger cells
    fig = Figure(figsize=(cell * len(items) + 0.9, cell * rows + 0.7 * rows), dpi=100)
    # one narrow last column holds the colour bars, so every row's pictures stay in their columns
    grid = fig.subplots(rows, len(items) + 1, squeeze=False,
                        gridspec_kw={"width_ratios": [1.0] * len(items) + [0.06]})
    axes, bars = grid[:, :-1], grid[:, -1]
    ref_shape = reference.shape[:2] if reference is not None else None
    origin = "lower" if panels.kind in ("ct", "mri") else "upper"  # RAS volumes: anterior up, as the previews
    for col, it in enumerate(items):
        name, role, label = it.name, it.role, it.label
        ax = axes[0, col]
        shown = _display(panels, it.image, role)
        extent = None
        if ref_shape and role != "measurement" and shown.shape[:2] != ref_shape:
            # an input smaller than the reference (SR, low-res MS) is drawn over the same extent
            rows_span = (-0.5, ref_shape[0] - 0.5) if origin == "lower" else (ref_shape[0] - 0.5, -0.5)
            extent = (-0.5, ref_shape[1] - 0.5, *rows_span)
        ax.imshow(shown, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest", extent=extent, origin=origin,
                  aspect="auto" if role == "measurement" else "equal")
        metric = _metric_line(name, methods, panels.meta.get("primary"))
        title = "\n".join(textwrap.wrap(label, 30)[:3]) + (f"\n{metric}" if metric else "")
        ax.set_title(title, fontsize=8)
    scale_text = ""
    if has_err:
        # one scale for all: the median of the maps' 99th percentiles (a failed method saturates, it does
        # not wash out the others)
        vmax = _robust_top([e for e in errors if e is not None])
        last = None
        for col, err in enumerate(errors):
            if err is not None:
                last = axes[1, col].imshow(err, cmap="inferno", vmin=0.0, vmax=vmax, interpolation="nearest",
                                           origin=origin)
        fig.colorbar(last, cax=bars[1])
        axes[1, 0].set_ylabel("|error|", fontsize=9)
        unit = {"ct": " HU", "mri": " of the reference max", "rgb": " (RGB, 0-1)"}.get(panels.kind, " (input units)")
        scale_text = (f"|error| maps share one scale, 0 to {_fmt(vmax)}{unit} (the median of the maps' 99th "
                      "percentiles; brighter saturates)")
    if has_std:
        row = 1 + has_err
        vmax = _robust_top([s for s in stds if s is not None])
        last = None
        for col, std in enumerate(stds):
            if std is not None:
                last = axes[row, col].imshow(std, cmap="viridis", vmin=0.0, vmax=vmax, interpolation="nearest",
                                             origin=origin)
        fig.colorbar(last, cax=bars[row])
        axes[row, 0].set_ylabel("posterior std", fontsize=9)
        unit = {"ct": " HU", "mri": " (magnitude units)"}.get(panels.kind, "")
        scale_text += f"; posterior std 0 to {_fmt(vmax)}{unit} (per-pixel std over the averaged samples)"
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        if not ax.images:
            ax.set_frame_on(False)
    for ax in bars:
        if not ax.collections and not ax.images:
            ax.set_axis_off()
    return _figure_png(fig), scale_text


def _pictures(npz: Path, methods: dict[str, dict[str, Any]] | None, data_label: Any) -> str:
    """The figure and caption of an evaluation's picture set (``evaluate --images``)."""
    from scorerecon.pipelines.panels import load_panels

    try:
        panels = load_panels(npz)
        png, scale_text = panels_figure(panels, methods)
    except (ValueError, KeyError, IndexError) as exc:
        return f'<p class="error">{_esc(npz.name)}: {_esc(exc)}</p>'
    meta = panels.meta
    data = data_label or meta.get("data")
    caption = [f"<b>{_esc(meta.get('slice', ''))}</b>"]
    if data:
        caption.append(f"data: <b>{_esc(data)}</b>")
    caption.append(f"display: {_esc(meta.get('display', ''))}")
    if scale_text:
        caption.append(_esc(scale_text))
    caption.append(f"from {_esc(npz.name)}")
    return (f'<figure class="pictures">{_img(png, f"pictures of {npz.stem}")}'
            f'<figcaption>{" · ".join(caption)}</figcaption></figure>')


# ------------------------------------------------------------------------------- reconstructions
def find_reconstructions(outdir: Path) -> list[Path]:
    """Complete-looking reconstruction stores of a run (``OUTDIR/recon/*.zarr``)."""
    return sorted(p for p in (outdir / "recon").glob("*.zarr") if p.is_dir() and not p.name.startswith("."))


def _real(values: np.ndarray) -> np.ndarray:
    """Magnitude of complex values; real values (HU can be negative) as they are."""
    return (np.abs(values) if np.iscomplexobj(values) else values).astype(np.float32)


def _input_slice(recon: xr.Dataset, z: int) -> np.ndarray | None:
    """The input store's slice ``z`` on the reconstruction's grid, or None where the grids differ.

    Image stores: the voxel map ``inv(A_input) @ A_recon`` must be an in-plane shift (a crop); k-space
    stores: the root-sum-of-squares image (readout oversampling cropped) of the same shape.
    """
    from scorerecon.modalities.io.store import open_store

    try:
        source = open_store(Path(str(recon.attrs["input_store"])))
    except (KeyError, InputError, OSError, ValueError):
        return None
    ny, nx = recon.sizes["y"], recon.sizes["x"]
    if "image" in source.data_vars and {"z", "y", "x"} <= set(source["image"].dims):
        try:
            voxel = np.linalg.inv(np.asarray(source.attrs["affine"], float)) @ np.asarray(recon.attrs["affine"], float)
        except (KeyError, ValueError, np.linalg.LinAlgError):
            return None
        if not np.allclose(voxel[:2, :2], np.eye(2), atol=1e-3):
            return None  # resampled in-plane (--downsample): no voxel-to-voxel comparison
        x0, y0 = (int(round(v)) for v in voxel[:2, 3])
        image = source["image"]
        if min(x0, y0) < 0 or y0 + ny > image.sizes["y"] or x0 + nx > image.sizes["x"] or not 0 <= z < image.sizes["z"]:
            return None
        extra = {d: 0 for d in image.dims if d not in ("z", "y", "x")}
        plane = np.asarray(image.isel(extra, z=z, y=slice(y0, y0 + ny), x=slice(x0, x0 + nx))
                           .transpose("y", "x").values)
        return _real(plane)
    if "kspace" in source.data_vars:
        from scorerecon.modalities.io.kspace import kspace_to_image

        k = source["kspace"]
        extra = {d: 0 for d in k.dims if d not in ("coil", "z", "ky", "kx")}
        k = k.isel(extra, z=z) if "z" in k.dims else k.isel(extra)
        k = k.expand_dims("coil") if "coil" not in k.dims else k
        rss = np.sqrt(np.sum(np.abs(kspace_to_image(np.asarray(k.transpose("coil", "ky", "kx").values)
                                                     .astype(np.complex64))) ** 2, axis=0))
        factor = float(source.attrs.get("readout_oversampling", 1.0) or 1.0)
        if factor > 1:
            keep = int(round(rss.shape[-1] / factor))
            rss = rss[:, (rss.shape[-1] - keep) // 2:(rss.shape[-1] - keep) // 2 + keep]
        return rss.astype(np.float32) if rss.shape == (ny, nx) else None
    return None


def _simulated(info: Any) -> bool:
    """Whether the reconstruction's measurement was simulated from its input (a retrospective run)."""
    if not isinstance(info, dict):
        return False
    mask = info.get("mask") if isinstance(info.get("mask"), dict) else {}
    return "simulated" in str(info.get("measurement", "")) + str(info.get("input", "")) or \
        mask.get("kind") in ("random", "equispaced", "poisson")


def reconstruction_panels(path: Path) -> Any:
    """A reconstruction store's middle slice as a picture set: its input slice, result, std."""
    from scorerecon.modalities.io.store import attrs_json, open_store
    from scorerecon.pipelines.panels import CT_WINDOW, PanelSet

    ds = open_store(path)
    task = str(ds.attrs.get("task", path.stem))
    image = ds["image"]
    std = ds["std"] if "std" in ds.data_vars else None
    if {"z", "y", "x"} <= set(image.dims):
        m = image.sizes["z"] // 2
        z_in = int(ds["source_slice"].values[m]) if "source_slice" in ds.coords else m
        result = _real(np.asarray(image.isel(z=m).transpose("y", "x").values))
        spread = None if std is None else np.asarray(std.isel(z=m).transpose("y", "x").values)
        source = _input_slice(ds, z_in)
        info = attrs_json(ds, "reconstruction") or {}
        retro = source is not None and _simulated(info)
        where = f"z = {z_in} of the input (slice {m + 1} of {image.sizes['z']} reconstructed)"
        ct = task == "ct" or str(ds.attrs.get("modality", "")).upper() == "CT"
        top = float(np.max(source)) if source is not None else float(np.max(result))
        meta = {"slice": where, "primary": None, "window": list(CT_WINDOW) if ct else [0.0, top or 1.0],
                "display": (f"HU window [{CT_WINDOW[0]:g}, {CT_WINDOW[1]:g}] (soft tissue, W400 L40)" if ct else
                            "magnitude from 0 to the input slice's maximum") + (
                                "; the measurement was simulated from the input, so |difference| to it is the "
                                "error" if retro else "")}
        panels = PanelSet(task, "ct" if ct else "mri", meta)
        if source is not None:
            panels.add("input", "reference" if retro else "input", source,
                       "input slice (the measurement was simulated from it)" if retro else "input slice")
        label = f"{ds.attrs.get('checkpoint_name', '')} {info.get('solver', '')}".strip() or "reconstruction"
        panels.add("reconstruction", "diffusion", result, f"reconstruction ({label})", spread)
        return panels.finish()
    if {"band", "y", "x"} <= set(image.dims):
        names = [str(b) for b in image.coords["band"].values] if "band" in image.coords else []
        step = _stride(max(image.sizes["y"], image.sizes["x"]))
        result = np.asarray(image.isel(y=slice(None, None, step), x=slice(None, None, step)).values, np.float32)
        natural = [names.index(b) for b in ("B04", "B03", "B02") if b in names]
        rgb = natural if len(natural) == 3 else list(range(min(3, result.shape[0])))
        lo, hi = np.percentile(result[rgb].reshape(len(rgb), -1), [1, 99], axis=1)
        meta = {"slice": f"whole scene (every {step}th pixel)" if step > 1 else "whole scene", "rgb": rgb,
                "window": [lo.tolist(), hi.tolist()], "primary": None,
                "display": f"bands {', '.join(names[i] if names else str(i) for i in rgb)} as R, G, B, 1-99 % stretch"}
        panels = PanelSet(task, "multispectral", meta)
        spread = None if std is None else np.moveaxis(np.asarray(
            std.isel(y=slice(None, None, step), x=slice(None, None, step)).values, np.float32), 0, -1)
        panels.add("reconstruction", "diffusion", np.moveaxis(result, 0, -1), "reconstruction", spread)
        return panels.finish()
    raise ValueError(f"no picture for an image with dims {image.dims}")


def describe_export(path: Path) -> list[tuple[str, str, str]]:
    """``(file, format, geometry)`` rows of one export folder's files, read back with their readers."""
    rows: list[tuple[str, str, str]] = []
    others: dict[str, list[Path]] = {}
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    dicoms = [p for p in files if p.suffix.lower() == ".dcm"]
    for p in files:
        name = p.name.lower()
        if p in dicoms[1:] or name.endswith((".json", ".sha256")):  # sidecars: provenance, the export's digests
            continue
        size = f"{p.stat().st_size / 1e3:.0f} kB"
        try:
            if name.endswith((".nii", ".nii.gz")):
                import nibabel as nib

                img = nib.load(p)
                codes = "".join(nib.aff2axcodes(img.affine))
                zooms = " × ".join(f"{z:.3g}" for z in img.header.get_zooms()[:3])
                origin = ", ".join(f"{v:.1f}" for v in img.affine[:3, 3])
                rows.append((p.name, f"NIfTI, {size}", f"{' × '.join(map(str, img.shape))} voxels of {zooms} mm, "
                             f"orientation {codes}, origin ({origin}) mm"))
            elif p in dicoms:
                import pydicom

                ds = pydicom.dcmread(p, stop_before_pixels=True)
                spacing = " × ".join(f"{float(v):.3g}" for v in getattr(ds, "PixelSpacing", []))
                iop = ", ".join(f"{float(v):g}" for v in getattr(ds, "ImageOrientationPatient", []))
                rows.append((f"{len(dicoms)} × {p.name}" if len(dicoms) > 1 else p.name,
                             f"DICOM {getattr(ds, 'Modality', '?')}, {'/'.join(getattr(ds, 'ImageType', []))}",
                             f"{ds.Rows} × {ds.Columns} × {len(dicoms)} slices, pixel {spacing} mm, slice "
                             f"{_fmt(float(getattr(ds, 'SliceThickness', 0) or 0))} mm, orientation [{iop}]"))
            elif name.endswith((".tif", ".tiff")):
                import rasterio

                with rasterio.open(p) as src:
                    rows.append((p.name, f"GeoTIFF, {size}", f"{src.count} bands × {src.height} × {src.width}, "
                                 f"{src.crs}, pixel {abs(src.transform.a):g} × {abs(src.transform.e):g}"))
            else:
                others.setdefault(p.suffix.lower() or p.name, []).append(p)
        except Exception as exc:  # a report never fails on an export it cannot read: it says so
            rows.append((p.name, size, f"unreadable: {type(exc).__name__}: {exc}"))
    for suffix, group in others.items():
        total = sum(q.stat().st_size for q in group) / 1e3
        what = group[0].name if len(group) == 1 else f"{len(group)} × {suffix} ({group[0].name} ...)"
        shape = ""
        if suffix == ".png":
            from PIL import Image

            with Image.open(group[0]) as im:
                shape = f"{im.width} × {im.height} pixels, mode {im.mode}"
        rows.append((what, f"{total:.0f} kB", shape))
    return rows


def _reconstruction_panel(path: Path, exports: Path) -> str:
    from scorerecon.pipelines.info import describe

    parts = [f'<div class="panel" id="recon-{_esc(path.stem)}"><h3>{_esc(path.name)}</h3>']
    try:
        panels = reconstruction_panels(path)
        png, scale_text = panels_figure(panels)
        caption = [f"<b>{_esc(panels.meta['slice'])}</b>", f"display: {_esc(panels.meta['display'])}"]
        if scale_text:
            caption.append(_esc(scale_text))
        parts.append(f'<figure class="pictures">{_img(png, f"reconstruction {path.stem}")}'
                     f'<figcaption>{" · ".join(caption)}</figcaption></figure>')
    except (InputError, ValueError, KeyError, OSError) as exc:
        parts.append(f'<p class="error">no picture: {_esc(type(exc).__name__)}: {_esc(exc)}</p>')
    try:
        info = describe(path)["groups"]
        geometry = next(iter(info.values()))["geometry"]
        if geometry:
            parts.append(_table(["key", "value"], [(k, _compact(v)) for k, v in geometry.items()]))
    except (InputError, StopIteration, KeyError):
        pass
    parts.append(_exports_table(exports))
    parts.append("</div>")
    return "".join(parts)


# ------------------------------------------------------------------------------------ hardware
def describe_hardware() -> dict[str, Any]:
    """This process's machine: CPU, accelerator torch sees, host, and the SLURM allocation if any."""
    import torch

    from scorerecon.pipelines import hardware
    from scorerecon.pipelines.device import resolve_device

    info = hardware.describe(str(resolve_device("auto")))
    info.update({
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "scorerecon": __version__,
        "cuda_available": torch.cuda.is_available(),
        "cuda_device_count": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "slurm": {k: os.environ[k] for k in SLURM_ENV if k in os.environ},
    })
    return info


def _hardware_section(info: dict[str, Any]) -> str:
    rows = [(k, v) for k, v in info.items() if k != "slurm"]
    rows += [(k, v) for k, v in (info.get("slurm") or {}).items()]
    return ('<p class="muted">The machine a GPU-requesting job of this run was given.</p>'
            + _table(["key", "value"], rows))


# -------------------------------------------------------------------------------------- report
def _samples_section(paths: list[Path]) -> str:
    figures = []
    for path in paths:
        data = path.read_bytes()
        if not data.startswith(b"\x89PNG\r\n\x1a\n"):
            continue
        figures.append(f"<figure>{_img(data, path.stem)}<figcaption>{_esc(path.stem)}</figcaption></figure>")
    return f'<div class="grid">{"".join(figures)}</div>'


def build_report(outdir: Path, title: str | None = None, only: Iterable[Path] | None = None) -> str:
    """The report's HTML for the run in ``outdir`` (every image embedded).

    ``only`` (optional) lists the stores, sample PNGs and evaluation JSONs of *this* run: files
    left in ``outdir`` by an earlier run with another config are then not reported as this run's.
    """
    outdir = Path(outdir)
    if not outdir.is_dir():
        raise InputError(outdir, "output directory does not exist")
    wanted = None if only is None else {Path(p).resolve() for p in only}

    def keep(paths: Iterable[Path]) -> list[Path]:
        return [p for p in paths if wanted is None or p.resolve() in wanted]

    sections: list[tuple[str, str, str]] = []  # (anchor, heading, body)

    stores = keep(find_stores(outdir))
    if stores:
        sections.append(("stores", f"Ingested stores ({len(stores)})", "".join(_store_panel(p) for p in stores)))
    samples = keep(sorted((outdir / "samples").glob("*.png")))
    if samples:
        sections.append(("samples", "Samples from the priors", _samples_section(samples)))
    evaluations = [(p, d) for p, d in read_evaluations(outdir) if wanted is None or p.resolve() in wanted]
    if evaluations:
        sections.append(("evaluation", "Evaluation",
                         "".join(_evaluation_panel(p, d) for p, d in evaluations)))
    reconstructions = keep(find_reconstructions(outdir))
    if reconstructions:
        sections.append(("reconstruction", "Reconstructions", "".join(
            _reconstruction_panel(p, outdir / "recon" / "exports" / p.stem) for p in reconstructions)))
    benchmarks = read_benchmarks(outdir)
    if benchmarks:
        sections.append(("timings", "Per-rule timings", _benchmark_section(benchmarks)))
    hardware_file = outdir / "hardware.json"
    if hardware_file.is_file():
        try:
            sections.append(("hardware", "Hardware", _hardware_section(json.loads(hardware_file.read_text()))))
        except (OSError, json.JSONDecodeError) as exc:
            sections.append(("hardware", "Hardware", f'<p class="error">{_esc(exc)}</p>'))

    title = title or f"scorerecon report: {outdir.name}"
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    nav = "".join(f'<a href="#{a}">{_esc(h)}</a>' for a, h, _ in sections)
    body = "".join(f'<section id="{a}"><h2>{_esc(h)}</h2>{b}</section>' for a, h, b in sections)
    if not sections:
        body = '<p class="muted">Nothing to report yet: no stores, samples, evaluations or benchmarks found.</p>'
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{_esc(title)}</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<header><h1>{_esc(title)}</h1><p>{_esc(outdir.resolve())} · generated {now} · "
        f"scorerecon {_esc(__version__)}</p></header><nav>{nav}</nav><main>{body}</main></body></html>\n"
    )


def _write_atomic(path: Path, text: str) -> Path:
    """Write via a temporary sibling and rename, so no reader ever sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        staging.write_text(text, encoding="utf-8")
        os.replace(staging, path)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    return path


def write_report(outdir: Path, output: Path, title: str | None = None, only: Iterable[Path] | None = None) -> Path:
    """Build the report for ``outdir`` and write it to ``output`` atomically."""
    return _write_atomic(Path(output), build_report(Path(outdir), title, only))


def _run(args: argparse.Namespace) -> int:
    if args.hardware:
        _write_atomic(args.output, json.dumps(describe_hardware(), indent=2) + "\n")
        print(f"wrote {args.output}")
        return 0
    if args.outdir is None:
        print("scorerecon report: error: --outdir is required (unless --hardware)", file=sys.stderr)
        return 2
    out = write_report(args.outdir, args.output, args.title, args.only)
    print(f"wrote {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", help="one self-contained HTML page summarising a workflow run",
        description="Summarise a workflow output directory in one HTML file (images embedded): store "
        "previews with geometry and provenance, sample grids, evaluation tables and per-rule timings. "
        "With --hardware, instead write a JSON description of this machine (CPU, GPU, SLURM allocation).")
    parser.add_argument("--outdir", type=Path, help="the run's output directory (e.g. results/demo)")
    parser.add_argument("-o", "--output", type=output_file(), required=True,
                        help="the HTML file to write (the JSON file with --hardware)")
    parser.add_argument("--title", help="page title (default: 'scorerecon report: OUTDIR')")
    parser.add_argument("--only", type=Path, nargs="*", default=None,
                        help="report only these stores / sample PNGs / evaluation JSONs of OUTDIR (the workflow "
                        "passes this run's outputs, so leftovers of an earlier config are not shown)")
    parser.add_argument("--hardware", action="store_true",
                        help="write this machine's description as JSON to --output and exit (the workflow's "
                        "`hardware` rule runs it inside a GPU job)")
    parser.set_defaults(func=_run)
