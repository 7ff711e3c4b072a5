"""Random streams for samplers: one ``torch.Generator`` per batch, or one per sample.

:func:`scorerecon.models.samplers.sample` draws every random number through :func:`randn`.
With an int seed that is one generator for the whole batch (the historical behaviour: the same
seed, batch and device give bitwise the same output). With a sequence of seeds, one per batch
element, it is a :class:`SampleGenerators`: sample ``i``'s noise comes from generator ``i`` only,
so a sample's result depends on its own seed and not on its batch mates, the batch size or its
position in the batch. The tile engine (:mod:`scorerecon.pipelines.engine`) relies on that to
give every tile the same result however tiles are batched.

``noise_device`` puts the generators on another device than the sampling one (noise is drawn
there and copied over): with ``noise_device="cpu"`` the same seeds give the same noise on CPU,
CUDA and MPS, which is what the cross-device correctness check needs (CUDA's Philox stream and
the CPU's Mersenne Twister differ). It costs a host draw and a copy per step, so the default is
the sampling device.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

Tensor = torch.Tensor

__all__ = ["SampleGenerators", "randn"]


class SampleGenerators:
    """Independent random streams, one per batch element, seeded ``seeds[i]``."""

    def __init__(self, seeds: Sequence[int], device: torch.device | str = "cpu",
                 noise_device: torch.device | str | None = None) -> None:
        if len(seeds) == 0:
            raise ValueError("need at least one seed")
        self.seeds = [int(s) for s in seeds]
        self.device = torch.device(device)
        self.noise_device = self.device if noise_device is None else torch.device(noise_device)
        self.generators = [torch.Generator(device=self.noise_device).manual_seed(s) for s in self.seeds]

    def __len__(self) -> int:
        return len(self.generators)

    def randn(self, shape: Sequence[int], device: torch.device | str, dtype: torch.dtype) -> Tensor:
        """Standard normal ``shape`` noise; row ``i`` (and only row ``i``) from generator ``i``."""
        shape = tuple(int(s) for s in shape)
        if shape[0] != len(self.generators):
            raise ValueError(f"noise for a batch of {shape[0]} but {len(self.generators)} per-sample seeds")
        rows = [torch.randn((1, *shape[1:]), generator=g, device=self.noise_device, dtype=dtype)
                for g in self.generators]
        return torch.cat(rows).to(device)


def randn(generator: torch.Generator | SampleGenerators | None, shape: Sequence[int],
          device: torch.device | str, dtype: torch.dtype) -> Tensor:
    """``torch.randn`` from a batch generator, per-sample generators, or the global stream (``None``)."""
    if isinstance(generator, SampleGenerators):
        return generator.randn(shape, device, dtype)
    return torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)
