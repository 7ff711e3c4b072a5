"""What machine a number was measured on: for benchmark tables, model cards and provenance."""

from __future__ import annotations

import datetime
import os
import platform


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
