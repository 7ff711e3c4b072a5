"""``scorerecon sample CHECKPOINT | --task TASK``: draw unconditional samples from a trained prior.

``--task`` samples the task's shipped unconditional prior (the task registry,
:mod:`scorerecon.pipelines.tasks.registry`; tasks served only by conditional models have none).

Writes three files next to each other (``-o grid.png``):

* ``grid.png`` — the samples tiled into a grid, in the model's normalised range (the card's
  ``data.normalization.range``) mapped to 0..255; 3-D samples show their middle slice;
* ``grid.npy`` — all samples, float32 ``(n, C, *size)``, mapped back to data units with the
  card's normalisation (for MRI: the intensity units of the training volume);
* ``grid.json`` — provenance: checkpoint and weights sha256, sampler, NFE, seed, seconds,
  hardware.

The samplers are :func:`scorerecon.models.samplers.sample` (predictor-corrector, DDPM,
annealed Langevin, probability-flow ODE, ...); the checkpoint is verified by
:func:`~scorerecon.models.checkpoint.load_score_model` before anything runs.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from scorerecon.pipelines.errors import InputError
from scorerecon.pipelines.options import DEVICE_HELP, device, int_range, output_file


def to_grid(samples: np.ndarray, value_range: tuple[float, float] = (-1.0, 1.0), pad: int = 2,
            columns: int | None = None) -> np.ndarray:
    """Tile ``(n, C, H, W)`` (or ``(n, C, D, H, W)``: middle slice) samples into a uint8 image.

    One channel gives a grey image, three an RGB one; other counts show the first channel.
    Values are clipped to ``value_range`` and mapped to 0..255; tiles are separated by ``pad``
    black pixels.
    """
    if samples.ndim == 5:
        samples = samples[:, :, samples.shape[2] // 2]
    if samples.ndim != 4:
        raise ValueError(f"expected (n, C, H, W) samples, got shape {samples.shape}")
    n, c, h, w = samples.shape
    samples = samples if c in (1, 3) else samples[:, :1]
    lo, hi = value_range
    scaled = np.clip((samples - lo) / (hi - lo), 0.0, 1.0) * 255.0
    tiles = np.round(scaled).astype(np.uint8).transpose(0, 2, 3, 1)  # n, h, w, c
    cols = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.zeros((rows * h + (rows + 1) * pad, cols * w + (cols + 1) * pad, tiles.shape[-1]), np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + q * (w + pad)
        grid[y:y + h, x:x + w] = tiles[i]
    return grid[..., 0] if grid.shape[-1] == 1 else grid


def _checked_size(size: list[int], network: dict, checkpoint: Path) -> list[int]:
    """``--size``: one value per spatial dim of the prior (one value: all dims), each a size the UNet
    accepts (a multiple of 2 ** (levels - 1): it halves the image between levels)."""
    dims = int(network.get("spatial_dims", 2))
    size = list(size) * dims if len(size) == 1 else list(size)
    if len(size) != dims:
        raise InputError(checkpoint, f"--size needs {dims} values for this {dims}-D prior (or one for all), "
                                     f"got {len(size)}")
    factor = 2 ** (len(network.get("channels", [0])) - 1) if network.get("kind", "unet") == "unet" else 1
    if any(s % factor for s in size):
        raise InputError(checkpoint, f"--size {' '.join(map(str, size))}: each size must be a multiple of {factor} "
                                     f"(the network halves the image {factor.bit_length() - 1} times)")
    return size


def _checkpoint(args: argparse.Namespace) -> Path:
    """The prior to sample: the CHECKPOINT given, else ``--task``'s unconditional prior (registry)."""
    from scorerecon.pipelines.tasks.registry import get_task

    if args.checkpoint is not None:
        return args.checkpoint
    if args.task is None:
        raise InputError(None, "name a CHECKPOINT or a --task whose prior to sample")
    task = get_task(args.task)
    if "prior" not in task.priors:
        raise InputError(None, f"--task {task.name} has no unconditional prior (only conditional models: "
                               f"{', '.join(task.priors.values())}); name a CHECKPOINT")
    return Path(task.priors["prior"])


def _run(args: argparse.Namespace) -> int:
    import torch
    from PIL import Image

    from scorerecon.models.checkpoint import load_score_model
    from scorerecon.models.data import denormalize
    from scorerecon.pipelines.hardware import describe

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        from scorerecon.models.samplers import sample
    except ModuleNotFoundError as exc:
        raise InputError(None, f"sampler module not available ({exc})") from None
    device = torch.device(args.device)  # resolved by the option type (one device policy)
    args.checkpoint = _checkpoint(args)
    model = load_score_model(args.checkpoint, device=device)
    card = model.card
    data = card.get("data", {})
    size = _checked_size(args.size, card["network"], args.checkpoint) if args.size else data.get("patch_size")
    if not size:
        raise InputError(args.checkpoint, "model card has no data.patch_size; pass --size")
    channels = card["network"].get("data_channels", card["network"].get("dim", 1))
    if card["network"].get("cond_channels", 0):
        raise InputError(args.checkpoint, "conditional prior: sample it through a task that supplies the condition")
    shape = (args.n, channels, *size) if card["network"]["kind"] == "unet" else (args.n, channels)
    sampler = args.sampler or card.get("sampling", {}).get("sampler", "pc")
    nfe = args.nfe or int(card.get("sampling", {}).get("nfe", 100))
    start = time.perf_counter()
    with torch.no_grad():
        try:
            result = sample(model, shape, sampler=sampler, nfe=nfe, seed=args.seed, device=device)
        except ValueError as exc:  # unknown sampler, budget too small for it, ...: the user's options
            raise InputError(args.checkpoint, f"cannot sample with {sampler!r}, nfe={nfe}: {exc}") from None
    seconds = time.perf_counter() - start
    samples = result.x.detach().float().cpu().numpy()
    norm = data.get("normalization", {})
    value_range = tuple(norm.get("range", (-1.0, 1.0)))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    in_units = denormalize(samples, norm) if "values" in norm else samples
    np.save(args.output.with_suffix(".npy"), in_units.astype(np.float32))
    if samples.ndim >= 4:
        Image.fromarray(to_grid(samples, value_range)).save(args.output)
    record = {"checkpoint": str(args.checkpoint), "task": args.task, "weights_sha256": card["weights"]["sha256"],
              "sampler": sampler, "nfe_budget": nfe, "nfe": result.nfe, "seed": args.seed, "n": args.n,
              "shape": list(shape),
              "seconds": round(seconds, 2), "hardware": describe(str(device)),
              "npy_units": "data units (card normalization inverted)" if "values" in norm else "model units"}
    args.output.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.output} (+ .npy, .json): {args.n} samples, {sampler}, {result.nfe} NFE, {seconds:.1f} s")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from scorerecon.pipelines.tasks.registry import TASKS

    parser = subparsers.add_parser("sample", help="draw samples from a trained prior into a PNG grid + .npy")
    parser.add_argument("checkpoint", type=Path, nargs="?", default=None,
                        help="checkpoint: a name or directory (model.safetensors + model_card.json); default: --task's")
    parser.add_argument("--task", choices=tuple(TASKS), default=None,
                        help="sample this task's shipped unconditional prior (" + ", ".join(
                            f"{t.name}: {t.priors['prior']}" for t in TASKS.values() if "prior" in t.priors) + ")")
    parser.add_argument("--n", type=int_range(1, 4096), default=16, help="number of samples (default 16)")
    parser.add_argument("--nfe", type=int_range(1, 100_000), default=None,
                        help="network evaluations per sample (default: the card's sampling.nfe, else 100)")
    parser.add_argument("--sampler", default=None, help="sampler name (default: the card's, else pc)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int_range(1, 8192), nargs="+", default=None,
                        help="spatial size, one value per spatial dim or one for all (default: training patch)")
    parser.add_argument("--device", type=device, default="auto", help=DEVICE_HELP)
    parser.add_argument("--threads", type=int_range(1, 1024), default=None, help="torch CPU threads")
    parser.add_argument("-o", "--output", type=output_file(".png"), required=True,
                        help="PNG path; .npy/.json written beside it")
    parser.set_defaults(func=_run)
