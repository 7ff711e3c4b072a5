"""Which torch device a step runs on: one policy for every command and library entry point.

``"auto"`` (the default everywhere) takes CUDA if torch sees a GPU, then Apple's MPS, then the
CPU. The environment variable ``SCORERECON_DEVICE`` overrides ``"auto"`` (so a Snakemake rule or
SLURM job can pin a step without changing its command line); an explicit ``"cpu"``, ``"cuda"``,
``"cuda:1"`` or ``"mps"`` is checked and used as given, and a device that is not present is a
``ValueError`` naming what is available, rather than a failure later inside a kernel. Indices
are torch's, i.e. *after* ``CUDA_VISIBLE_DEVICES``: a worker that the scheduler restricted to
GPU 3 sees it as ``cuda:0``, which is what ``"auto"`` returns.

It lives in ``models/`` (the torch core, which must not import ``pipelines/``) so the samplers
use the same policy as the CLI; :mod:`scorerecon.pipelines.device` re-exports it.
"""

from __future__ import annotations

import os

import torch

__all__ = ["DEVICE_ENV", "available_devices", "resolve_device"]

#: environment variable that overrides ``"auto"``
DEVICE_ENV = "SCORERECON_DEVICE"


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[str]:
    """Every device torch can use here, in preference order (``cuda:0..n-1``, ``mps``, ``cpu``)."""
    out = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    if _mps_available():
        out.append("mps")
    return [*out, "cpu"]


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """The device ``spec`` names, checked: ``"auto"``/``None`` -> CUDA, then MPS, then CPU.

    ``"cuda"`` means the current CUDA device (``cuda:0`` unless the process changed it). A
    device that is not present raises ``ValueError`` naming what is available.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        spec = os.environ.get(DEVICE_ENV, "").strip().lower() or "auto"
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise ValueError(f"unknown device {spec!r}; expected auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!r} requested but CUDA is not available here "
                             f"(torch {torch.__version__}); available: {', '.join(available_devices())}")
        index = torch.cuda.current_device() if dev.index is None else dev.index
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {spec!r} requested but only {torch.cuda.device_count()} CUDA device(s) "
                             f"are visible (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})")
        return torch.device("cuda", index)
    if dev.type == "mps":
        if not _mps_available():
            raise ValueError(f"device 'mps' requested but MPS is not available; available: "
                             f"{', '.join(available_devices())}")
        return dev
    raise ValueError(f"unsupported device type {dev.type!r}; expected auto, cpu, cuda, cuda:N or mps")
