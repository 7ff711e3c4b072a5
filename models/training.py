"""Denoising-score-matching training: one loop for every SDE, parametrisation and network.

Each step draws ``t ~ U(eps, 1)`` and ``noise ~ N(0, I)``, perturbs a batch of clean patches
``x_t = sde.perturb(x0, t, noise)``, and regresses the network output on
:func:`~scorerecon.models.parametrization.training_target` with
:func:`~scorerecon.models.parametrization.loss_weight` — together the ``sigma^2``-weighted DSM
objective of Song et al. (2021) whichever of eps / score / x0 / v the network predicts.

Around it: AdamW (``torch.optim.AdamW``) with linear warm-up, gradient-norm clipping, an EMA of
the weights (``torch.optim.swa_utils.AveragedModel`` with a warm-up decay ``min(decay, (1+n)/(10+n))``
so a short run is not dominated by its initial weights), bf16 autocast on CUDA only, and
checkpoints that resume bit-for-bit: raw and EMA weights, AdamW moments, step, elapsed time and
both random generators (torch for ``t``/noise, numpy for patch positions) are saved as
safetensors + JSON (see :mod:`scorerecon.models.checkpoint`). The same config and seed on the
same device give the same losses and weights, whether or not the run was interrupted.

The training config (a YAML in ``workflows/config/train/``) has sections ``data`` (see
:mod:`scorerecon.models.data`), ``sde``, ``parametrization``, ``network``, ``optimizer``,
``ema``, ``training``, optional ``sampling`` (recommended sampler, recorded in the card),
``seed``, ``name``, ``output`` and ``init_from`` (a checkpoint whose EMA weights start the run:
fine-tuning a prior on new data, recorded in the card with the weights' sha256);
:func:`resolve_config` checks it against the schema (:mod:`scorerecon.models.train_schema`:
unknown keys, types, ranges) and fills the defaults.

A run stops at ``training.steps`` or, with a wall-clock budget (``run(budget_s=...)``,
``scorerecon train --minutes``), at the first step that ends past the budget; either way it
checkpoints. The card's ``training.complete`` is true only when ``steps_planned`` was reached;
``training.stopped`` says why the run ended (``steps``, ``time_budget`` or ``until``). The card is
the last file a checkpoint writes, so a crash never leaves a card newer than the state beside it,
and ``complete: true`` appears only after the final step's weights are on disk.
"""

from __future__ import annotations

import copy
import csv
import gzip
import io
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from scorerecon import __version__
from scorerecon.errors import InputError
from scorerecon.models.checkpoint import (
    CARD_FILE,
    atomic_write_bytes,
    atomic_write_json,
    load_tensors,
    read_card,
    save_score_model,
    save_tensors,
)
from scorerecon.models.data import GaussianMixtureDataset, PatchDataset
from scorerecon.models.networks import build_network, count_parameters, normalize_network_config
from scorerecon.models.parametrization import PARAMETRIZATIONS, loss_weight, training_target
from scorerecon.models.score_model import NetworkScoreModel
from scorerecon.models.sde import sde_from_config
from scorerecon.models.train_schema import validate_config

Tensor = torch.Tensor
STATE_TENSORS = "training_state.safetensors"
STATE_JSON = "training_state.json"
LOSS_LOG = "loss_log.csv.gz"  # gzip (mtime 0: the same rows give the same bytes); ~1/3 of the CSV
LEGACY_LOSS_LOG = "loss_log.csv"  # what runs before 2026-12-05 wrote; still read to resume them
LOSS_COLUMNS = ("step", "loss", "lr", "grad_norm", "elapsed_s")

DEFAULTS: dict[str, Any] = {
    "name": "prior",
    "seed": 0,
    "sde": {"name": "vp"},
    "parametrization": "eps",
    "network": {"kind": "unet", "preset": "tiny"},
    "optimizer": {"lr": 2e-4, "weight_decay": 0.0, "betas": [0.9, 0.999], "grad_clip": 1.0, "warmup_steps": 100},
    "ema": {"decay": 0.999, "warmup": True},
    "training": {"steps": 1000, "batch_size": 16, "eps": 1e-5, "checkpoint_every": 250, "bf16": True},
    "sampling": {},
}


def resolve_config(config: dict[str, Any]) -> dict[str, Any]:
    """A training config, validated, with every default filled in (the form recorded in the model card)."""
    validate_config(config)
    out = copy.deepcopy(DEFAULTS)
    for key, value in config.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in ("network", "sde"):
            out[key] = {**out[key], **copy.deepcopy(value)}
        else:
            out[key] = copy.deepcopy(value)
    if out["parametrization"] not in PARAMETRIZATIONS:
        raise InputError(None, f"unknown parametrization {out['parametrization']!r}; expected {PARAMETRIZATIONS}")
    return out


def make_dataset(data_config: dict[str, Any], base_dir: str | os.PathLike | None = None) -> Any:
    """The training data a ``data`` config section describes.

    ``kind`` is ``patches`` (:class:`PatchDataset`), ``gaussian_mixture`` (a toy), or
    ``"scorerecon.<module>:<Class>"`` for a task's own dataset (paired data for conditional
    models: pan-sharpening, cloud removal, super-resolution, ...). A dataset has ``channels``,
    optionally ``cond_channels``, ``describe()`` and ``sample_batch(batch, rng)``, which returns
    either clean data ``x0`` or a pair ``(x0, cond)``.
    """
    kind = data_config.get("kind", "patches")
    if kind == "patches":
        return PatchDataset(data_config, base_dir=base_dir)
    if kind == "gaussian_mixture":
        return GaussianMixtureDataset(data_config)
    if isinstance(kind, str) and kind.startswith("scorerecon.") and ":" in kind:
        import importlib

        module_name, _, class_name = kind.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as exc:
            raise InputError(None, f"data kind {kind!r} cannot be imported ({exc})") from None
        return cls(data_config, base_dir=base_dir)
    raise InputError(None, f"unknown data kind {kind!r}; expected 'patches', 'gaussian_mixture' "
                           "or 'scorerecon.<module>:<Class>'")


def dsm_loss(model: NetworkScoreModel, x0: Tensor, generator: torch.Generator | None = None,
             eps: float = 1e-5, cond: Tensor | None = None, autocast: bool = False) -> Tensor:
    """The (batch-mean) denoising-score-matching loss of ``model`` on clean data ``x0``.

    ``autocast`` runs the network under bf16 autocast (CUDA); the loss itself is fp32.
    """
    batch = x0.shape[0]
    t = eps + (1.0 - eps) * torch.rand(batch, generator=generator, device=x0.device, dtype=x0.dtype)
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    x_t = model.sde.perturb(x0, t, noise)
    alpha, sigma = model.sde.alpha(t), model.sde.sigma(t)
    with torch.autocast(device_type=x0.device.type, dtype=torch.bfloat16, enabled=autocast):
        out = model(x_t, t, cond)
    target = training_target(model.parametrization, x0, noise, alpha, sigma)
    per_sample = (out.float() - target).pow(2).flatten(1).mean(1)
    return (loss_weight(model.parametrization, alpha, sigma) * per_sample).mean()


def _ema_multi_avg_fn(decay: float, warmup: bool):
    """EMA update for ``AveragedModel``: ``ema <- ema + (1 - d) (param - ema)``.

    ``d = min(decay, (1 + n) / (10 + n))`` with warm-up, ``n`` = updates so far; the same lerp
    as ``torch.optim.swa_utils.get_ema_multi_avg_fn`` otherwise.
    """

    def update(ema_params: list[Tensor], params: list[Tensor], num_averaged: Tensor | int) -> None:
        n = int(num_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n)) if warmup else decay
        torch._foreach_lerp_(ema_params, params, 1.0 - d)

    return update


def hardware_description(device: torch.device) -> dict[str, Any]:
    """What ran the training (for the model card): :func:`scorerecon.hardware.describe`
    plus torch threads and library versions."""
    import monai

    from scorerecon.hardware import describe

    return {**describe(str(device)), "torch_threads": torch.get_num_threads(), "monai": monai.__version__,
            "load_average_1min": round(os.getloadavg()[0], 2),  # a busy shared machine slows wall time
            "platform": platform.platform(), "python": platform.python_version()}


def loss_curve_summary(losses: list[float], segments: int = 10) -> dict[str, Any]:
    """A compact description of a loss curve: segment means, first/last 100-step means, minimum."""
    if not losses:
        return {}
    arr = np.asarray(losses, dtype=np.float64)
    parts = np.array_split(arr, min(segments, len(arr)))
    return {"segment_means": [round(float(p.mean()), 6) for p in parts],
            "first_100_mean": float(arr[:100].mean()), "last_100_mean": float(arr[-100:].mean()),
            "min": float(arr.min()), "steps": len(arr)}


class Trainer:
    """Owns one training run: model, EMA, optimiser, data, generators and the output directory.

    ``Trainer(config, output).run()`` trains to ``training.steps``; ``run(until=k)`` stops after
    step ``k`` (with a checkpoint), and ``Trainer(config, output, resume=True)`` continues from
    the last checkpoint in ``output``. ``dataset`` overrides the config's data (anything with
    ``sample_batch(batch, rng)``, ``channels`` and ``describe()``).
    """

    def __init__(self, config: dict[str, Any], output: str | os.PathLike | None = None,
                 device: str | torch.device = "cpu", resume: bool = False, command: str | None = None,
                 base_dir: str | os.PathLike | None = None, dataset: Any = None) -> None:
        self.config = resolve_config(config)
        self.device = torch.device(device)
        self.output = Path(output or self.config.get("output") or Path("checkpoints") / self.config["name"])
        self.command = command
        seed = int(self.config["seed"])
        self.dataset = dataset if dataset is not None else make_dataset(self.config["data"], base_dir=base_dir)

        net_cfg = dict(self.config["network"])
        if net_cfg.get("kind", "unet") == "unet":
            net_cfg.setdefault("spatial_dims", len(self.config["data"].get("patch_size", [0, 0])))
            net_cfg.setdefault("data_channels", self.dataset.channels)
            net_cfg.setdefault("cond_channels", int(getattr(self.dataset, "cond_channels", 0)))
        else:
            net_cfg.setdefault("dim", self.dataset.channels)
        self.network_config = normalize_network_config(net_cfg)
        torch.manual_seed(seed)  # weight initialisation only; training draws from self.generator
        network = build_network(self.network_config, use_flash_attention=self.device.type == "cuda")
        self.model = NetworkScoreModel(network, sde_from_config(self.config["sde"]),
                                       self.config["parametrization"]).to(self.device)
        ema_cfg = self.config["ema"]
        self.ema = AveragedModel(self.model.network, multi_avg_fn=_ema_multi_avg_fn(
            float(ema_cfg["decay"]), bool(ema_cfg.get("warmup", True))), use_buffers=True)
        opt = self.config["optimizer"]
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=float(opt["lr"]),
                                           betas=tuple(opt["betas"]), weight_decay=float(opt["weight_decay"]))
        self.generator = torch.Generator(device=self.device).manual_seed(seed + 1)
        self.rng = np.random.default_rng(seed)
        self.step, self.elapsed = 0, 0.0
        self.stopped: str | None = None  # why the last run() ended: steps, time_budget or until
        self.budget_s: float | None = None
        self.log: list[tuple[int, float, float, float, float]] = []
        self.autocast = self.device.type == "cuda" and bool(self.config["training"].get("bf16", True))
        self.init_from: dict[str, Any] | None = None
        if resume and (self.output / STATE_JSON).exists():
            self._load_state()
        elif self.config.get("init_from"):
            self._warm_start(Path(base_dir or ".") / self.config["init_from"])

    # --- the loop -----------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        """Learning rate at ``step``: linear warm-up, then constant or (``optimizer.schedule: cosine``)
        a half-cosine from ``lr`` down to ``lr * min_lr_ratio`` at ``training.steps`` — the usual way to
        end a fine-tuning run of a prior that was trained at a constant rate."""
        opt = self.config["optimizer"]
        warmup = int(opt.get("warmup_steps", 0))
        scale = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
        if opt.get("schedule", "constant") == "cosine":
            total = max(int(self.config["training"]["steps"]) - warmup, 1)
            progress = min(max(step - warmup, 0) / total, 1.0)
            floor = float(opt.get("min_lr_ratio", 0.0))
            scale *= floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
        return float(opt["lr"]) * scale

    def train_step(self) -> float:
        """One optimisation step; returns the loss."""
        start = time.perf_counter()
        train = self.config["training"]
        lr = self.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = self.dataset.sample_batch(int(train["batch_size"]), self.rng)
        x0, cond = batch if isinstance(batch, tuple) else (batch, None)
        x0 = x0.to(self.device)
        cond = None if cond is None else cond.to(self.device)
        self.model.train()
        loss = dsm_loss(self.model, x0, self.generator, float(train["eps"]), cond=cond, autocast=self.autocast)
        if not torch.isfinite(loss):
            raise InputError(self.output, f"training diverged: non-finite loss {loss.item()} at step {self.step + 1} "
                                          "(the last checkpoint is kept); lower optimizer.lr")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip = self.config["optimizer"].get("grad_clip")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), float(clip) if clip else float("inf"))
        self.optimizer.step()
        self.ema.update_parameters(self.model.network)
        self.step += 1
        value = float(loss.detach())
        self.elapsed += time.perf_counter() - start
        self.log.append((self.step, value, lr, float(grad_norm), round(self.elapsed, 3)))
        return value

    def run(self, until: int | None = None, progress: bool = False, budget_s: float | None = None) -> dict[str, Any]:
        """Train to step ``until`` (default: ``training.steps``), checkpointing; returns the card.

        ``budget_s`` is a wall-clock budget in seconds for this call (data loading and checkpoints
        included, start-up not): the run stops after the first step that ends past it, checkpoints
        and says so in the card (``stopped: time_budget``, ``complete: false`` unless the last
        planned step was reached).
        """
        total = int(self.config["training"]["steps"])
        until = total if until is None else min(int(until), total)
        if budget_s is not None and not budget_s > 0:
            raise InputError(None, f"the time budget must be > 0 seconds, got {budget_s}")
        self.budget_s = budget_s
        deadline = None if budget_s is None else time.monotonic() + budget_s
        every = int(self.config["training"].get("checkpoint_every", 0))
        if self.step >= until and (self.output / CARD_FILE).exists():
            return read_card(self.output)  # nothing to do: leave the finished checkpoint untouched
        bar = None
        if progress:
            import sys

            from tqdm import tqdm

            bar = tqdm(total=total, initial=self.step, desc=self.config["name"], unit="step", dynamic_ncols=True,
                       mininterval=0.5 if sys.stderr.isatty() else 30.0)
        card = None
        try:
            self.stopped = "steps" if until == total else "until"
            while self.step < until:
                loss = self.train_step()
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                if deadline is not None and time.monotonic() >= deadline and self.step < until:
                    self.stopped = "time_budget"
                    break
                if every and self.step % every == 0 and self.step < until:
                    self.save()
            card = self.save()
        finally:
            if bar is not None:
                bar.close()
        return card

    # --- checkpoints --------------------------------------------------------------------------
    def card(self) -> dict[str, Any]:
        losses = [row[1] for row in self.log]
        total = int(self.config["training"]["steps"])
        training = {
            "steps": self.step, "steps_planned": total, "complete": self.step >= total, "stopped": self.stopped,
            "time_budget_s": self.budget_s,
            "batch_size": int(self.config["training"]["batch_size"]), "eps": float(self.config["training"]["eps"]),
            "optimizer": {"name": "AdamW", **self.config["optimizer"]}, "ema": self.config["ema"],
            "seed": int(self.config["seed"]), "bf16_autocast": self.autocast,
            "final_loss": float(np.mean(losses[-100:])) if losses else None,
            "loss_curve": loss_curve_summary(losses), "wall_time_s": round(self.elapsed, 1),
            "steps_per_s": round(self.step / self.elapsed, 3) if self.elapsed > 0 else None,
            "hardware": hardware_description(self.device), "command": self.command, "config": self.config,
            "loss_log": LOSS_LOG,
        }
        if self.config.get("init_from"):
            training["init_from"] = self.init_from
        return {"name": self.config["name"], "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "scorerecon_version": __version__, "sde": self.model.sde.config(),
                "parametrization": self.model.parametrization, "network": self.network_config,
                "data": self.dataset.describe(), "sampling": self.config.get("sampling", {}), "training": training}

    def save(self) -> dict[str, Any]:
        """Write the resumable training state and the loss log, then EMA weights + card (last)."""
        self.output.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, Tensor] = {}
        tensors.update({f"model.{k}": v for k, v in self.model.network.state_dict().items()})
        tensors.update({f"ema.{k}": v for k, v in self.ema.module.state_dict().items()})
        tensors["ema_n_averaged"] = self.ema.n_averaged
        opt_state = self.optimizer.state_dict()
        for index, state in opt_state["state"].items():
            for key, value in state.items():
                tensors[f"optim.{index}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
        tensors["rng.torch"] = self.generator.get_state()
        digest = save_tensors(self.output / STATE_TENSORS, tensors)
        state_json = {"step": self.step, "elapsed_s": self.elapsed, "sha256": digest,
                      "optimizer_param_groups": opt_state["param_groups"],
                      "numpy_rng": self.rng.bit_generator.state, "config": self.config,
                      "init_from": self.init_from}
        atomic_write_json(self.output / STATE_JSON, state_json)
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(LOSS_COLUMNS)
        writer.writerows(_loss_log_row(row) for row in self.log)
        atomic_write_bytes(self.output / LOSS_LOG, gzip.compress(buffer.getvalue().encode(), mtime=0))
        (self.output / LEGACY_LOSS_LOG).unlink(missing_ok=True)  # one log per run: the gzip one now holds it
        return save_score_model(self.output, self.ema.module, self.card())

    def _warm_start(self, path: Path) -> None:
        """Start from another prior's EMA weights (fine-tuning on new data); the card records which."""
        from scorerecon.models.checkpoint import load_score_model

        source = load_score_model(path)
        mismatch = [what for what, mine, theirs in (
            ("network", self.network_config, normalize_network_config(source.card["network"])),
            ("sde", self.model.sde.config(), source.sde.config()),
            ("parametrization", self.model.parametrization, source.parametrization)) if mine != theirs]
        if mismatch:
            raise InputError(path, f"init_from checkpoint differs from this config in {mismatch}")
        state = source.network.state_dict()
        self.model.network.load_state_dict(state, strict=True)
        self.ema.module.load_state_dict(state, strict=True)
        card = source.card
        self.init_from = {"path": str(self.config["init_from"]), "name": card.get("name"),
                          "weights_sha256": card["weights"].get("sha256"),
                          "steps": card.get("training", {}).get("steps")}

    def _load_state(self) -> None:
        path = self.output / STATE_JSON
        try:
            state = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(path, f"unreadable training state ({exc})") from None
        saved, current = dict(state["config"]), dict(self.config)
        for cfg in (saved, current):  # what may change between sessions without changing the run
            cfg["training"] = {k: v for k, v in cfg["training"].items() if k not in ("steps", "checkpoint_every")}
            for key in ("output", "sampling"):
                cfg.pop(key, None)
        if saved != current:
            diff = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
            raise InputError(path, f"cannot resume: config differs from the checkpoint's in {diff} "
                                   "(only training.steps, checkpoint_every and sampling may change)")
        from scorerecon.hashing import sha256_file

        tensors_path = self.output / STATE_TENSORS
        if not tensors_path.is_file() or sha256_file(tensors_path) != state["sha256"]:
            raise InputError(tensors_path, "training state is missing or does not match its sha256")
        tensors = load_tensors(tensors_path, device="cpu")
        self.model.network.load_state_dict(
            {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
        self.ema.module.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}, strict=True)
        self.ema.n_averaged.copy_(tensors["ema_n_averaged"])
        opt_state: dict[str, Any] = {"state": {}, "param_groups": state["optimizer_param_groups"]}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, index, name = key.split(".", 2)
                opt_state["state"].setdefault(int(index), {})[name] = value
        self.optimizer.load_state_dict(opt_state)
        self.generator.set_state(tensors["rng.torch"])
        self.rng.bit_generator.state = state["numpy_rng"]
        self.step, self.elapsed = int(state["step"]), float(state["elapsed_s"])
        self.init_from = state.get("init_from")
        self.log = []
        for row in read_loss_log(self.output):
            if int(row["step"]) <= self.step:
                self.log.append((int(row["step"]), _float32(row["loss"]), float(row["lr"]),
                                 _float32(row["grad_norm"]), float(row["elapsed_s"])))


def read_loss_log(folder: Path) -> list[dict[str, str]]:
    """The rows of a training run's loss log (``step, loss, lr, grad_norm, elapsed_s``); ``[]`` if it has none.

    Reads ``loss_log.csv.gz``, or the plain ``loss_log.csv`` of a run written before the log was compressed.
    """
    folder = Path(folder)
    if (folder / LOSS_LOG).exists():
        text = gzip.decompress((folder / LOSS_LOG).read_bytes()).decode()
    elif (folder / LEGACY_LOSS_LOG).exists():
        text = (folder / LEGACY_LOSS_LOG).read_text()
    else:
        return []
    return list(csv.DictReader(io.StringIO(text)))


def _float32(text: str) -> float:
    """A logged float32 value read back exactly as training computed it (the log keeps 9 digits)."""
    return float(np.float32(float(text)))


def _loss_log_row(row: tuple) -> tuple:
    """One loss-log row with 9 significant digits: loss and gradient norm are float32 values, which
    9 digits round-trip exactly (Python's repr of them printed 17, doubling the shipped logs' size)."""
    step, loss, lr, grad_norm, elapsed = row
    return step, format(loss, ".9g"), format(lr, ".9g"), format(grad_norm, ".9g"), elapsed


def ema_network(trainer: Trainer) -> nn.Module:
    """The EMA network of a trainer (what checkpoints store and samplers should use)."""
    return trainer.ema.module


__all__ = ["Trainer", "read_loss_log", "dsm_loss", "resolve_config", "make_dataset", "loss_curve_summary",
           "hardware_description", "count_parameters", "ema_network"]
