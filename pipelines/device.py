"""Which device a step runs on, and at what precision: one policy for every task.

Device choice (:func:`resolve_device`, defined in :mod:`scorerecon.models.device` so the
    samplers share it)
    ``"auto"`` (every command's default) takes CUDA if torch sees a GPU, then Apple's MPS, then
    the CPU. The environment variable ``SCORERECON_DEVICE`` overrides ``"auto"`` (so a Snakemake
    rule or SLURM job can pin a step without changing its command line); an explicit ``"cpu"``,
    ``"cuda"``, ``"cuda:1"`` or ``"mps"`` is checked and used as given. Indices are torch's, i.e.
    *after* ``CUDA_VISIBLE_DEVICES``: a worker that the scheduler restricted to GPU 3 sees it as
    ``cuda:0``, which is what ``"auto"`` returns. Several GPUs are used by running one worker per
    GPU (Snakemake ``resources: gpu=1`` or a dask worker per GPU, each with its own
    ``CUDA_VISIBLE_DEVICES``); there is deliberately no multi-GPU code in the process itself.

Precision (:func:`precision_policy`)
    On CUDA: bf16 autocast around the network (measured 1.95x over tf32 eager on an H100,
    ``docs/conventions.md`` section 5), TF32 for the fp32 matmuls and convolutions that stay
    outside autocast, and PyTorch SDPA ("flash") attention in MONAI's attention blocks. Data
    consistency (FFTs, CG, projections) always runs in fp32: the engine autocasts the network
    only. On CPU and MPS: fp32, no autocast (CPU bf16 is slower than fp32 without AMX and is not
    what the CPU tests validate), eager attention on CPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from scorerecon.models.device import DEVICE_ENV, available_devices, resolve_device

__all__ = [
    "DEVICE_ENV",
    "Precision",
    "available_devices",
    "configure_backends",
    "precision_policy",
    "resolve_device",
    "set_flash_attention",
]

@dataclass(frozen=True)
class Precision:
    """How the network runs on ``device``: autocast dtype (``None``: off), TF32, SDPA attention."""

    device: torch.device
    autocast_dtype: torch.dtype | None
    tf32: bool
    flash_attention: bool

    @property
    def name(self) -> str:
        """Short label for tables: ``bf16``, ``tf32`` or ``fp32``."""
        if self.autocast_dtype is not None:
            return str(self.autocast_dtype).replace("torch.", "").replace("bfloat16", "bf16")
        return "tf32" if self.tf32 else "fp32"

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Autocast context for the network call (a no-op when autocast is off)."""
        if self.autocast_dtype is None:
            yield
            return
        with torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype):
            yield


def precision_policy(device: torch.device | str, precision: str = "auto") -> Precision:
    """The precision policy for ``device``.

    ``precision``: ``"auto"`` (bf16 autocast + TF32 + SDPA attention on CUDA; fp32 elsewhere),
    ``"bf16"`` (autocast; CUDA only), ``"tf32"`` (CUDA, no autocast) or ``"fp32"`` (strict fp32
    everywhere; SDPA attention still on for CUDA, it is exact in fp32).
    """
    device = resolve_device(device) if isinstance(device, str) else device
    cuda = device.type == "cuda"
    if precision == "auto":
        precision = "bf16" if cuda else "fp32"
    if precision == "bf16":
        if not cuda:
            raise ValueError("bf16 autocast is the CUDA policy; use precision='fp32' on cpu/mps")
        return Precision(device, torch.bfloat16, True, True)
    if precision == "tf32":
        if not cuda:
            raise ValueError("tf32 exists on CUDA only")
        return Precision(device, None, True, True)
    if precision == "fp32":
        return Precision(device, None, False, cuda)
    raise ValueError(f"unknown precision {precision!r}; expected auto, bf16, tf32 or fp32")


def configure_backends(policy: Precision) -> None:
    """Set the process-wide TF32 switches for ``policy`` (CUDA only; nothing to do elsewhere).

    Uses torch's ``fp32_precision`` switches where they exist (torch >= 2.9), else the legacy
    ``allow_tf32`` flags (mixing the two raises in recent torch).
    """
    if policy.device.type != "cuda":
        return
    value = "tf32" if policy.tf32 else "ieee"
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):
        matmul.fp32_precision = value
        torch.backends.cudnn.conv.fp32_precision = value
    else:  # pragma: no cover - older torch
        matmul.allow_tf32 = policy.tf32
        torch.backends.cudnn.allow_tf32 = policy.tf32
    torch.backends.cudnn.benchmark = True  # fixed tile shapes: pick the fastest conv algorithms once


def set_flash_attention(network: nn.Module, enabled: bool) -> int:
    """Switch MONAI attention blocks of a built network to / from PyTorch SDPA; returns how many.

    ``build_network(config, use_flash_attention=...)`` sets the same flag at construction; this
    flips it on a network that already exists (a checkpoint loaded for another device). The flag
    only selects the attention kernel, never the weights. Blocks that store attention maps
    (``save_attn``) cannot use SDPA and are left alone.
    """
    count = 0
    for module in network.modules():
        if hasattr(module, "use_flash_attention") and not getattr(module, "save_attn", False):
            if getattr(module, "rel_positional_embedding", None) is not None and enabled:
                continue
            module.use_flash_attention = bool(enabled)
            count += 1
    return count
