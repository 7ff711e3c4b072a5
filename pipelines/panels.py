"""Picture panels of an evaluation: the images ``scorerecon report`` shows beside the metric tables.

``scorerecon evaluate ... --images OUT.npz`` writes one picture set per evaluation: for one
slice (the middle one of the evaluated slices) or one image (the middle one of the inputs),

* the **measurement** where it is not an image (MRI: the k-space sampling mask; CT: the
  sinogram; pan-sharpening: the degraded pan), shown on its own grey scale;
* the **input** a user would otherwise look at (MRI: the zero-filled image; CT: FBP; natural
  images: the degraded photo; pan-sharpening: the low-resolution MS);
* the **best classical** result by the evaluation's primary metric (PSNR; ERGAS for
  pan-sharpening), every **diffusion** method and its posterior std when it averaged samples;
* the **reference**.

Display conventions travel with the file (``meta["window"]``, ``meta["display"]``) so every
picture of a set is on one scale and the report can say which: CT in HU through the soft-tissue
window ``[-160, 240]`` (W400 L40; the metric's ``[-1000, 400]`` leaves brain tissue one flat
grey); MRI magnitude from 0 to the reference volume's maximum (fastMRI's PSNR data range); RGB
in ``[0, 1]``; multispectral as a natural-colour composite of three bands, each stretched
between the reference band's 1st and 99th percentile.

File format (``numpy.savez_compressed``, a few hundred kB): ``meta`` is a JSON string
``{"format": "scorerecon-panels", "version": 1, "task", "kind", "slice", "data", "primary",
"window", "display", "units", "scale", "items": [{"name", "role", "label", "std", "error",
"scale"}], ...}``;
``image/<i>``, ``std/<i>`` and ``error/<i>`` hold item ``i`` as float16 ``(H, W)`` or ``(H, W, C)``,
divided by ``scale`` (the reference's largest magnitude, so HU or scanner units never overflow
float16; MRI errors are stored as they are, a fraction of the reference maximum). The |error|
maps are computed from the full-precision images before they are rounded; a multispectral set
keeps only its three display bands (the error is the mean over all bands).

Hand-written: a picture set is this project's own small record; matplotlib draws it
(:mod:`scorerecon.pipelines.report`).
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CT_WINDOW", "PanelItem", "PanelSet", "load_panels", "medical_panels", "natural_panels", "pansharpen_panels"]

FORMAT = "scorerecon-panels"
VERSION = 1
ROLES = ("measurement", "input", "classical", "diffusion", "reference")
CT_WINDOW = (-160.0, 240.0)  # HU shown: soft tissue (W400 L40); the metric scores [-1000, 400]
PANSHARPEN_WINDOW = 192  # reference pixels per side shown of a pan-sharpening evaluation


def _plane(x: Any) -> np.ndarray:
    """A host array with singleton dims dropped; complex -> magnitude."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    arr = np.abs(arr) if np.iscomplexobj(arr) else arr
    return np.squeeze(arr).astype(np.float32)


@dataclass
class PanelItem:
    """One picture: ``image`` ``(H, W)`` or ``(H, W, C)``; ``std`` the posterior std; ``error`` ``|image -
    reference|`` (filled in by :meth:`PanelSet.finish`)."""

    name: str
    role: str  # one of ROLES
    label: str
    image: np.ndarray
    std: np.ndarray | None = None
    error: np.ndarray | None = None


@dataclass
class PanelSet:
    """An ordered picture set and its display record (``meta``: window, units, slice, data, primary)."""

    task: str
    kind: str  # "ct" | "mri" | "rgb" | "multispectral"
    meta: dict[str, Any] = field(default_factory=dict)
    items: list[PanelItem] = field(default_factory=list)

    def add(self, name: str, role: str, image: Any, label: str = "", std: Any = None) -> PanelSet:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        self.items.append(PanelItem(name, role, label or name, _plane(image), None if std is None else _plane(std)))
        return self

    def reference(self) -> np.ndarray | None:
        return next((it.image for it in self.items if it.role == "reference"), None)

    def finish(self) -> PanelSet:
        """Compute every item's ``|error|`` against the reference at full precision (where shapes match):
        mean over channels; MRI as a fraction of the window's top, CT in HU, other kinds in their units.
        Multispectral sets then keep only their three display bands (and the band-mean std)."""
        ref = self.reference()
        for it in self.items:
            if ref is None or it.role in ("measurement", "reference") or it.image.shape != ref.shape:
                continue
            err = np.abs(it.image.astype(np.float64) - ref)
            err = err.mean(axis=-1) if err.ndim == 3 else err
            if self.kind == "mri":
                err = err / max(float(self.meta["window"][1]), 1e-30)
            it.error = err.astype(np.float32)
        if self.kind == "multispectral" and "rgb" in self.meta:
            rgb = list(self.meta["rgb"])
            bands = self.meta.get("bands")
            for it in self.items:
                if it.image.ndim == 3 and it.image.shape[-1] > len(rgb):
                    it.image = it.image[..., rgb]
                if it.std is not None and it.std.ndim == 3:
                    it.std = it.std.mean(axis=-1)
            self.meta.update(rgb=list(range(len(rgb))), rgb_bands=[bands[i] for i in rgb] if bands else rgb)
        return self

    def to_bytes(self) -> bytes:
        """The ``.npz`` file's bytes (see the module doc)."""
        self.finish()
        ref = self.reference()
        scale = float(np.nanmax(np.abs(ref))) if ref is not None and np.isfinite(ref).any() else 1.0
        scale = scale if scale > 0 else 1.0
        arrays: dict[str, np.ndarray] = {}
        entries = []
        for i, it in enumerate(self.items):
            # a measurement keeps its own scale (k-space mask, sinogram): it is never compared
            own = float(np.nanmax(np.abs(it.image))) if it.role == "measurement" and np.isfinite(it.image).any() \
                else scale
            own = own if own > 0 else 1.0
            arrays[f"image/{i}"] = (it.image / own).astype(np.float16)
            for key, value in (("std", it.std), ("error", it.error)):
                if value is not None:
                    arrays[f"{key}/{i}"] = (value / own).astype(np.float16) if key == "std" or self.kind != "mri" \
                        else value.astype(np.float16)
            entries.append({"name": it.name, "role": it.role, "label": it.label, "std": it.std is not None,
                            "error": it.error is not None, "scale": own})
        meta = {"format": FORMAT, "version": VERSION, "task": self.task, "kind": self.kind, **self.meta,
                "scale": scale, "items": entries}
        arrays["meta"] = np.array(json.dumps(meta))
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        return buffer.getvalue()

    def save(self, path: str | Path) -> Path:
        """Write the set atomically (a reader never sees half a file)."""
        from scorerecon.models.checkpoint import atomic_write_bytes

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, self.to_bytes())
        return path


def load_panels(path: str | Path) -> PanelSet:
    """Read a set written by :meth:`PanelSet.save`; ``ValueError`` when it is not one."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("format") != FORMAT:
                raise ValueError(f"not a {FORMAT} file")
            kind = meta["kind"]
            items = []
            for i, entry in enumerate(meta["items"]):
                own = float(entry.get("scale", meta.get("scale", 1.0)))
                read = lambda key, factor, i=i: data[f"{key}/{i}"].astype(np.float32) * factor  # noqa: E731
                items.append(PanelItem(
                    entry["name"], entry["role"], entry.get("label", entry["name"]), read("image", own),
                    read("std", own) if entry.get("std") else None,
                    read("error", 1.0 if kind == "mri" else own) if entry.get("error") else None))
    except (OSError, KeyError, TypeError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"unreadable picture set ({type(exc).__name__}: {exc})") from None
    extra = {k: v for k, v in meta.items() if k not in ("format", "version", "task", "kind", "items")}
    return PanelSet(meta["task"], kind, extra, items)


def _best_classical(methods: dict[str, dict[str, Any]], primary: str | None) -> str | None:
    from scorerecon.pipelines.evaluate import best_per_family

    return best_per_family(methods, primary).get("classical")


def middle(n: int) -> int:
    """The index shown of ``n`` evaluated slices / images."""
    return max(0, int(n) // 2)


# ------------------------------------------------------------------------------------ builders
def medical_panels(task: str, truth: np.ndarray, slices: list[int], classical: dict[str, Any],
                   diffusion: dict[str, tuple[Any, Any]], methods: dict[str, dict[str, Any]], *,
                   measurement: Any = None, data: str | None = None) -> PanelSet:
    """MRI / CT: the middle evaluated slice of every method (``evaluate``'s arrays, batch first).

    ``classical``: ``{name: (image, seconds)}`` (complex MRI images allowed); ``diffusion``:
    ``{name: (image, std or None)}``; ``measurement``: the k-space mask (MRI) or the sinograms
    (CT), batch first for CT.
    """
    m = middle(len(slices))
    pick = lambda x: _plane(x)[m] if _plane(x).ndim == 3 else _plane(x)  # noqa: E731
    if task == "ct":
        window, units = list(CT_WINDOW), "HU"
        display = (f"HU window [{CT_WINDOW[0]:g}, {CT_WINDOW[1]:g}] (soft tissue, W400 L40; the metric scores "
                   "[-1000, 400]); |error| in HU")
        inputs = [("fbp", "FBP (filtered back-projection of the measured views)")]
    else:
        window, units = [0.0, float(np.max(truth))], "magnitude"
        display = ("magnitude from 0 to the reference volume's maximum (the PSNR data range); |error| as a "
                   "fraction of that maximum")
        inputs = [("zero_filled", "zero-filled (inverse FFT of the measured k-space)")]
    meta = {"slice": f"z = {slices[m]} (slice {m + 1} of {len(slices)} evaluated)", "data": data,
            "primary": "psnr", "window": window, "units": units, "display": display}
    panels = PanelSet(task, task, meta)
    if measurement is not None:
        if task == "ct":
            panels.add("sinogram", "measurement", pick(measurement), "measured sinogram (views x detector bins)")
        else:
            mask = _plane(measurement)
            mask = mask[m] if mask.ndim == 3 else mask
            panels.add("mask", "measurement", np.broadcast_to(mask, truth.shape[-2:]),
                       "k-space sampling mask (white: measured)")
    for name, label in inputs:
        if name in classical:
            panels.add(name, "input", pick(classical[name][0]), label)
    best = _best_classical({k: v for k, v in methods.items() if k in classical}, "psnr")
    if best is not None and best not in dict(inputs):
        panels.add(best, "classical", pick(classical[best][0]), f"{best} (best classical by PSNR)")
    for name, (image, std) in diffusion.items():
        panels.add(name, "diffusion", pick(image), name, None if std is None else pick(std))
    panels.add("reference", "reference", truth[m], "reference")
    return panels


def natural_panels(result: dict[str, Any]) -> PanelSet:
    """Natural images: the middle input image of ``evaluate_natural(..., keep_images=True)``'s result.

    Its ``"_images"`` (``{method | "degraded" | "reference": [(H, W, 3) in [0, 1], ...]}``) is
    taken out of ``result``; the degraded input may be smaller than the reference (SR).
    """
    images = result.pop("_images")
    params, methods = result["params"], result["methods"]
    k = middle(len(images["reference"]))
    name = Path(str(params["inputs"][k])).name
    meta = {"slice": f"{name} (image {k + 1} of {len(images['reference'])})", "primary": "psnr",
            "window": [0.0, 1.0], "units": "RGB",
            "display": "RGB in [0, 1] as scored (estimates clipped); |error| = mean over the 3 channels"}
    panels = PanelSet(str(result["task"]), "rgb", meta)
    panels.add("degraded", "input", np.clip(images["degraded"][k], 0, 1), f"degraded input: {params['degradation']}")
    outputs = {n: v[k] for n, v in images.items() if n not in ("degraded", "reference")}
    best = _best_classical({n: v for n, v in methods.items() if n in outputs}, "psnr")
    if best is not None:
        panels.add(best, "classical", outputs[best], f"{best} (best classical by PSNR)")
    for n, image in outputs.items():
        if methods.get(n, {}).get("family") == "diffusion":
            panels.add(n, "diffusion", image)
    panels.add("reference", "reference", images["reference"][k], "reference")
    return panels


def pansharpen_panels(arrays: dict[str, Any], result: dict[str, Any]) -> PanelSet:
    """Pan-sharpening at Wald's reduced resolution: ``evaluate_pansharpen``'s ``"_arrays"`` (band stacks
    ``(C, H, W)`` in the input's units: reference, ms_low, pan_low, fused per method, diffusion std)."""
    params, methods = result["params"], result["methods"]
    ratio = int(params["ratio"])
    full = np.asarray(arrays["reference"]).shape[-2:]
    # a central window of at most PANSHARPEN_WINDOW reference pixels (multiples of the ratio) keeps the file small
    size = [min(n, PANSHARPEN_WINDOW) // ratio * ratio for n in full]
    start = [(n - m) // 2 // ratio * ratio for n, m in zip(full, size, strict=True)]
    cut = (..., slice(start[0], start[0] + size[0]), slice(start[1], start[1] + size[1]))
    low = (..., slice(start[0] // ratio, (start[0] + size[0]) // ratio),
           slice(start[1] // ratio, (start[1] + size[1]) // ratio))
    arrays = {"reference": np.asarray(arrays["reference"])[cut], "ms_low": np.asarray(arrays["ms_low"])[low],
              "pan_low": np.asarray(arrays["pan_low"])[cut],
              "fused": {n: np.asarray(v)[cut] for n, v in arrays["fused"].items()},
              "std": None if arrays.get("std") is None else np.asarray(arrays["std"])[cut]}
    reference, bands = np.asarray(arrays["reference"], dtype=np.float32), [str(b) for b in params["bands"]]
    natural = [b for b in ("B04", "B03", "B02") if b in bands]
    rgb = [bands.index(b) for b in natural] if len(natural) == 3 else list(range(min(3, len(bands))))
    lo, hi = np.percentile(reference[rgb].reshape(len(rgb), -1), [1, 99], axis=1)
    primary = "ergas"
    meta = {"slice": (f"central {size[0]} x {size[1]} MS pixels of the {full[0]} x {full[1]} evaluated, ratio "
                      f"{ratio}"),
            "data": params.get("holdout"), "primary": primary, "bands": bands, "rgb": rgb,
            "window": [lo.tolist(), hi.tolist()], "units": "input MS units",
            "display": (f"bands {', '.join(bands[i] for i in rgb)} as R, G, B, each stretched between the "
                        "reference band's 1st and 99th percentile; |error| = mean over all "
                        f"{len(bands)} bands, input units")}
    channels_last = lambda x: np.moveaxis(np.asarray(x, dtype=np.float32), 0, -1)  # noqa: E731
    panels = PanelSet("pansharpen", "multispectral", meta)
    panels.add("pan", "measurement", arrays["pan_low"], "degraded pan (the sharpening input)")
    panels.add("ms_low", "input", channels_last(arrays["ms_low"]), "low-resolution MS (the input)")
    fused = arrays["fused"]
    best = _best_classical({n: v for n, v in methods.items() if n in fused}, primary)
    if best is not None:
        panels.add(best, "classical", channels_last(fused[best]), f"{best} (best classical by ERGAS)")
    for n, image in fused.items():
        if methods.get(n, {}).get("family") == "diffusion":
            std = arrays.get("std")
            panels.add(n, "diffusion", channels_last(image), n, None if std is None else channels_last(std))
    panels.add("reference", "reference", channels_last(reference), "reference (the original MS)")
    return panels
