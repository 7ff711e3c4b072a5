"""A :class:`~scorerecon.pipelines.tasks.Problem` through the tile engine: slices x samples in planned batches.

The medical and natural-image tasks reconstruct whole slices (one slice = one tile), so the tile
engine's work here is what it does for rasters minus the stitching: the prior runs as the
engine prepares it (:class:`~scorerecon.pipelines.engine.TileEngine`: moved to the device, bf16
autocast + TF32 + SDPA attention on CUDA, ``torch.compile`` when asked), and a problem's
``slices x posterior samples`` elements are cut into batches whose size the engine's memory
planner chooses (:meth:`~scorerecon.pipelines.engine.TileEngine.plan`: probed free memory on
CUDA, a fixed default on CPU/MPS, ``EngineConfig.batch_size`` to override). Element ``(sample k,
slice i)`` always draws its noise from the stream
:func:`~scorerecon.pipelines.tasks.sample_seeds` names for it, and its sub-problem is built by
:attr:`Problem.select` with the whole problem's batch-level decisions (intensity scale, phase
model), so a slice's result does not depend on the batch it lands in, the batch size or the
number of posterior samples (to float rounding of batched kernels).

Whole-batch runs, one per posterior sample (the way every problem ran before), remain for what
couples the batch on purpose: a caller's guidance factory (TV along z, :mod:`.volume`; the
natural-image data steps), the ``dds_tta`` adapter shared by a volume's slices, and problems
without :attr:`Problem.select`. With ``torch.compile`` the last batch is padded to the planned
size (repeating its last element, discarded after) so the compiled shape never changes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from scorerecon.models.adaptation import TestTimeAdaptation
from scorerecon.models.guidance import Guidance, LinearOperator
from scorerecon.models.rng import SampleGenerators
from scorerecon.pipelines.engine import EngineConfig, TileEngine
from scorerecon.pipelines.tasks import Problem, SliceModel, make_guidance, run_sampler, sample_seeds

Tensor = torch.Tensor

__all__ = ["COUPLED_SOLVERS", "PreparedPrior", "batch_size_for", "prepare_engine", "solve"]

#: solvers whose state is shared by the slices of a batch (never cut into planned batches)
COUPLED_SOLVERS: tuple[str, ...] = ("dds_tta",)


@dataclass
class PreparedPrior:
    """A prior as the engine runs it: the engine, the whole-slice view of its prepared network, the raw model.

    ``raw`` is what test-time adaptation copies and adapts (eager, fp32): an adapter is trained
    on the plain network, not on a compiled or autocast wrapper of it.
    """

    engine: TileEngine
    net: SliceModel
    raw: Any

    @property
    def device(self) -> torch.device:
        return self.engine.device


def prepare_engine(model: Any, problem: Problem, device: torch.device | str,
                   config: EngineConfig | None = None) -> PreparedPrior:
    """``model`` inside a :class:`TileEngine` on ``device``, for whole slices of ``problem``.

    ``config``: engine options (precision, compile, batch size); its ``device`` is replaced by
    ``device``. A :class:`SliceModel` (or a subclass, e.g. the natural tasks' measurement start) is kept,
    with the engine's prepared prior in place of its model.
    """
    config = replace(config or EngineConfig(), device=device)
    inner = model.model if isinstance(model, SliceModel) else model
    engine = TileEngine(inner, config)
    if isinstance(model, SliceModel):  # keep the wrapper (and what a subclass adds), run the prepared prior
        net = copy.copy(model)
        net.model = engine.model
    else:
        net = SliceModel(engine.model, None, problem.channels_as_batch, problem.border_context)
    return PreparedPrior(engine, net, inner)


def batch_size_for(engine: TileEngine, net: SliceModel, problem: Problem, n_elements: int,
                   grad: bool) -> tuple[int, str]:
    """Elements (slice x sample) per sampler call -- the engine's plan for one padded slice, at most
    ``n_elements`` -- and the plan's reason (``fixed``, ``cpu default``, ``probe`` ...).

    The planner probes the network at the shape it really sees: the slice reflect-padded to the
    UNet's multiple, one channel per image when channels ride in the batch (then each element
    costs ``C`` network samples).
    """
    c, *spatial = (int(s) for s in problem.shape[1:])
    padded = [net.padded_size(s) for s in spatial]
    per_element = c if net.channels_as_batch and c > 1 else 1
    shape = (1 if per_element > 1 else c, *padded)
    plan = engine.plan(shape, None, grad=grad)
    size = plan.batch_size if plan.reason == "fixed" else plan.batch_size // per_element
    return max(1, min(n_elements, size)), plan.reason


def solve(problem: Problem, prior: PreparedPrior, solver: str, spec: dict[str, Any], nfe: int, seed: int,
          n_samples: int, guidance: Callable[[LinearOperator, Tensor], Guidance] | None, x_init: Tensor | None,
          t_start: float | None) -> tuple[list[Tensor], list[list[int]], int, dict[str, Any]]:
    """Every posterior sample of ``problem``: states per sample ``(B, ...)``, seeds per sample, NFE per sample, and
    how it ran (``execution``: device, precision, compile mode, batching).

    Planned batches of ``(sample, slice)`` elements when the problem can be cut and nothing
    couples its batch (module doc), else one whole-batch sampler call per sample.
    """
    n = int(problem.shape[0])
    seeds = [sample_seeds(problem, seed, k) for k in range(n_samples)]
    engine, net, device = prior.engine, prior.net, prior.device
    if guidance is not None or solver in COUPLED_SOLVERS or problem.select is None:
        return _whole_batches(problem, prior, solver, spec, nfe, seeds, guidance, x_init, t_start)
    elements = [(k, i) for k in range(n_samples) for i in range(n)]
    size, reason = batch_size_for(engine, net, problem, len(elements), grad=solver == "dps")
    calls = -(-len(elements) // size)
    states: list[list[Tensor | None]] = [[None] * n for _ in range(n_samples)]
    nfe_used = 0
    for start in range(0, len(elements), size):
        chunk = elements[start:start + size]
        pad = size - len(chunk) if engine.fixed_shape and len(elements) > size else 0
        rows = chunk + [chunk[-1]] * pad  # a compiled shape never changes: repeat the last element
        index = [i for _, i in rows]
        sub = problem.select(index)
        y = sub.y.to(device)
        g = make_guidance(solver, sub.operator, y, spec, prior.raw)
        streams = SampleGenerators([seeds[k][i] for k, i in rows], device, engine.config.noise_device)
        init = None if x_init is None else x_init[index]
        result = run_sampler(net, sub.shape, spec, g, nfe, streams, device, init, t_start)
        for row, (k, i) in enumerate(chunk):
            states[k][i] = result.x[row]
        nfe_used = result.nfe
    info = execution_record(prior, f"planned batches of slices x samples ({reason})", size, calls)
    return [torch.stack(s) for s in states], seeds, nfe_used, info  # type: ignore[arg-type]


def execution_record(prior: PreparedPrior, batching: str, batch_size: int, calls: int) -> dict[str, Any]:
    """How the tile engine ran a solve (device, precision, compile mode, batching): the
    ``execution`` block every reconstruction's provenance carries, whichever solver ran."""
    engine = prior.engine
    return {"engine": "TileEngine", "device": str(engine.device), "precision": engine.policy.name,
            "compile": engine.config.compile, "batching": batching, "batch_size": int(batch_size),
            "sampler_calls": int(calls)}


def _whole_batches(problem: Problem, prior: PreparedPrior, solver: str, spec: dict[str, Any], nfe: int,
                   seeds: list[list[int]], guidance: Callable[[LinearOperator, Tensor], Guidance] | None,
                   x_init: Tensor | None, t_start: float | None
                   ) -> tuple[list[Tensor], list[list[int]], int, dict[str, Any]]:
    """One sampler call per posterior sample over the whole batch (coupled solvers and data steps)."""
    net, device = prior.net, prior.device
    y = problem.y.to(device)
    states, nfe_used = [], 0
    for streams in seeds:
        g = make_guidance(solver, problem.operator, y, spec, prior.raw) if guidance is None \
            else guidance(problem.operator, y)
        sampler_net = net  # test-time adaptation samples with its own adapted copy of the prior
        if isinstance(g, TestTimeAdaptation):
            sampler_net = SliceModel(g.model, net.multiple, net.channels_as_batch, net.context)
        generators = SampleGenerators(streams, device, prior.engine.config.noise_device)
        result = run_sampler(sampler_net, problem.shape, spec, g, nfe, generators, device, x_init, t_start)
        states.append(result.x)
        nfe_used = result.nfe
    why = "whole batch per sample: " + ("the caller's data step couples the slices" if guidance is not None else
                                        f"{solver} couples the slices" if solver in COUPLED_SOLVERS else
                                        "the problem cannot be cut")
    return states, seeds, nfe_used, execution_record(prior, why, int(problem.shape[0]), len(seeds))
