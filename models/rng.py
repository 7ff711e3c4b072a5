"""Random streams for samplers: one ``torch.Generator`` per batch, or one per sample.

:func:`scorerecon.models.samplers.sample` draws every random number through :func:`randn`.
With an int seed that is one generator for the whole batch (the historical behaviour: the same
seed, batch and device give bitwise the same output). With a sequence of seeds, one per batch
element, it is a :class:`SampleGenerators`: sample ``i``'s noise comes from generator ``i`` only,
so a sample's result depends on its own seed and not on its batch mates, the batch size or its
position in the batch. The tile engine (:mod:`scorerecon.pipelines.engine`) relies on that to
give every tile the same result however tiles are batched, and the reconstruction tasks
(:func:`scorerecon.pipelines.tasks.reconstruct`) to give every slice the same result whatever
slices it is reconstructed with; both name each stream with :func:`derive_seed`.

``noise_device`` puts the generators on another device than the sampling one (noise is drawn
there and copied over): with ``noise_device="cpu"`` the same seeds give the same noise on CPU,
CUDA and MPS, which is what the cross-device correctness check needs (CUDA's Philox stream and
the CPU's Mersenne Twister differ). It costs a host draw and a copy per step, so the default is
the sampling device.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

Tensor = torch.Tensor

__all__ = ["SampleGenerators", "derive_seed", "randn"]


def derive_seed(*parts: object) -> int:
    """A stable 63-bit seed from ``parts`` (e.g. run seed, slice or tile id, sample index).

    ``blake2b`` of the parts joined by ``|``: the same parts give the same seed in every process
    and on every machine (Python's ``hash()`` is salted per process), and different parts give
    unrelated streams, unlike ``seed + i``, whose neighbouring runs share streams (run seed 1's
    slice 0 would be run seed 0's slice 1). The tile engine seeds every tile
    (``derive_seed(seed, source, tile index)``) and the reconstruction tasks every slice and
    posterior sample this way, so a result never depends on what else rides in its batch.
    """
    text = "|".join(str(p) for p in parts)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1


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
