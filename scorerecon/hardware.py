"""What machine and software a number or an output was made with: for benchmark tables, model cards
and provenance.

Neutral (imports nothing of the project but its version): :mod:`scorerecon.pipelines.hardware`
re-exports it under its historical name.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
from collections.abc import Iterable

from scorerecon import __version__

__all__ = ["cpu_model", "describe", "one_line", "software_versions"]

#: The libraries whose versions decide a reconstruction's numbers (recorded in every output).
CORE_SOFTWARE = ("torch", "numpy", "scipy", "monai", "sigpy", "scikit-image", "xarray", "zarr", "dask",
                 "nibabel", "pydicom", "rasterio", "safetensors")


def cpu_model() -> str:
    """The CPU's marketing name (Linux), or the architecture elsewhere."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe(device: str | None = None) -> dict:
    """CPU, core count, torch version, accelerator name (if ``device`` is CUDA), date."""
    import torch

    info = {
        "date": datetime.date.today().isoformat(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "device": device or "cpu",
    }
    if device and str(device).startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def one_line(device: str | None = None) -> str:
    """``date: ... machine: ...`` as printed under every benchmark table."""
    info = describe(device)
    machine = info.get("gpu") or f"{info['cpu']}, {info['cores']} cores"
    return f"date: {info['date']}  machine: {machine}  torch {info['torch']}  device: {info['device']}"


def software_versions(names: Iterable[str] = CORE_SOFTWARE) -> dict[str, str]:
    """Installed versions of ``names`` (distribution names; absent ones left out), Python and scorerecon."""
    found = {"python": platform.python_version(), "scorerecon": __version__}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found
