"""Checkpoints: safetensors weights + a JSON model card; never pickle, never ``torch.load``.

A checkpoint is a directory::

    <name>/model.safetensors         EMA weights of the network (what samplers use), fp32
    <name>/model_card.json           SDE, parametrisation, network config, normalisation,
                                     training data sha256s, steps, losses, wall time, hardware,
                                     the command to reproduce, and the weights' sha256
    <name>/training_state.safetensors + training_state.json
                                     raw weights, EMA, optimiser moments, step, RNG states
                                     (only needed to resume training)
    <name>/loss_log.csv.gz           one row per step (gzip CSV; models.training.read_loss_log)

:func:`load_score_model` trusts nothing it is handed: it recomputes the weights' sha256 and
compares it with the card (a corrupt or swapped file fails here), then checks every tensor
name and shape against the network the card describes, and reports any mismatch as one
:class:`~scorerecon.pipelines.errors.InputError` line naming the file.

Checkpoints are found independently of the working directory (:func:`resolve_checkpoint`): a
name such as ``head_ct_ddpm`` (or the defaults' ``checkpoints/head_ct_ddpm``) is looked up in
``$SCORERECON_CHECKPOINTS``, then in the project's ``checkpoints/`` folder beside the installed
package, then relative to the working directory (docs/checkpoints.md).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from scorerecon.errors import InputError
from scorerecon.hashing import sha256_file
from scorerecon.models.networks import build_network, normalize_network_config
from scorerecon.models.parametrization import PARAMETRIZATIONS
from scorerecon.models.score_model import NetworkScoreModel
from scorerecon.models.sde import sde_from_config

WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "model_card.json"
CARD_FORMAT = "scorerecon-model-card"
CARD_VERSION = 1
#: Environment variable: folders (``os.pathsep``-separated) searched first for checkpoint names.
CHECKPOINTS_ENV = "SCORERECON_CHECKPOINTS"


def _publish(tmp: str | Path, path: Path) -> None:
    """Give a finished temporary file the usual permissions (mkstemp makes 0600) and rename it."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary sibling + rename (no half-written files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        _publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    """Pretty JSON, written atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> str:
    """Save contiguous CPU copies of ``tensors`` as safetensors, atomically; returns the sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
        digest = sha256_file(tmp)
        _publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return digest


def load_tensors(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read a safetensors file, turning any read/format failure into an :class:`InputError`."""
    if not path.is_file():
        raise InputError(path, "file is missing")
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise InputError(path, f"not a readable safetensors file ({type(exc).__name__}: {exc})") from None


def save_score_model(directory: str | os.PathLike, model: NetworkScoreModel | nn.Module,
                     card: dict[str, Any]) -> dict[str, Any]:
    """Write ``model``'s network weights and its card into ``directory``; returns the final card.

    ``card`` must hold ``sde``, ``parametrization`` and ``network`` (a full network config);
    this adds the ``weights`` record (file, sha256, dtype, tensor count) and the format tag.
    """
    directory = Path(directory)
    network = model.network if isinstance(model, NetworkScoreModel) else model
    for key in ("sde", "parametrization", "network"):
        if key not in card:
            raise ValueError(f"model card needs {key!r}")
    state = network.state_dict()
    digest = save_tensors(directory / WEIGHTS_FILE, state, metadata={"format": "scorerecon-score-network"})
    card = {"format": CARD_FORMAT, "format_version": CARD_VERSION, **card,
            "weights": {"file": WEIGHTS_FILE, "sha256": digest, "dtype": "float32", "tensors": len(state),
                        "parameters": sum(p.numel() for p in network.parameters())}}
    atomic_write_json(directory / CARD_FILE, card)
    return card


def checkpoint_search_path() -> list[Path]:
    """Folders a checkpoint *name* is looked up in, in order (see :func:`resolve_checkpoint`).

    The entries of ``$SCORERECON_CHECKPOINTS`` (``os.pathsep``-separated), then the project's
    ``checkpoints/`` folder next to the installed package (the repository for an editable
    install), when it exists.
    """
    import scorerecon

    dirs = [Path(p).expanduser() for p in os.environ.get(CHECKPOINTS_ENV, "").split(os.pathsep) if p.strip()]
    shipped = Path(scorerecon.__file__).resolve().parents[1] / "checkpoints"
    if shipped.is_dir():
        dirs.append(shipped)
    return dirs


def resolve_checkpoint(ref: str | os.PathLike) -> Path:
    """The checkpoint ``ref`` names, found independently of the working directory.

    * an absolute path is taken as it is; so is a path starting with ``./`` or ``../`` (relative
      to the working directory, on purpose);
    * any other reference -- a name (``head_ct_ddpm``), the shipped defaults' ``checkpoints/<name>``
      form, or a relative path -- is looked up as ``<dir>/<name>`` in every folder of
      :func:`checkpoint_search_path` (``<name>`` without a leading ``checkpoints/``), then as
      given relative to the working directory. The first that exists wins.

    Raises :class:`InputError` listing where it looked. ``ref`` may also be a card or weights
    file inside a checkpoint folder.
    """
    text = os.fspath(ref)
    path = Path(text).expanduser()
    if path.is_absolute() or text.startswith(("./", "../", f".{os.sep}", f"..{os.sep}")):
        if not path.exists():
            raise InputError(path, "checkpoint does not exist")
        return path
    parts = path.parts
    name = Path(*parts[1:]) if len(parts) > 1 and parts[0] == "checkpoints" else path
    candidates = [root / name for root in checkpoint_search_path()] + [Path.cwd() / path]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    searched = ", ".join(dict.fromkeys(str(c) for c in candidates))
    raise InputError(text, f"checkpoint not found (looked in {searched}; put priors in a folder listed in "
                           f"${CHECKPOINTS_ENV}, docs/checkpoints.md)")


def _resolve(path: str | os.PathLike) -> tuple[Path, Path]:
    """Card and weights paths from a checkpoint directory, its card or its weights file (:func:`resolve_checkpoint`)."""
    path = resolve_checkpoint(path)
    directory = path if path.is_dir() else path.parent
    return directory / CARD_FILE, directory


def read_card(path: str | os.PathLike) -> dict[str, Any]:
    """The model card of a checkpoint (directory, card or weights path), validated for shape."""
    card_path, _ = _resolve(path)
    if not card_path.is_file():
        raise InputError(card_path, "model card is missing; refusing weights without a card")
    try:
        card = json.loads(card_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(card_path, f"model card is not valid JSON ({exc})") from None
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise InputError(card_path, f"not a scorerecon model card (format is not {CARD_FORMAT!r})")
    missing = [k for k in ("sde", "parametrization", "network", "weights") if k not in card]
    if missing:
        raise InputError(card_path, f"model card lacks {missing}")
    if card["parametrization"] not in PARAMETRIZATIONS:
        raise InputError(card_path, f"unknown parametrisation {card['parametrization']!r}")
    return card


def load_score_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> NetworkScoreModel:
    """Rebuild a :class:`NetworkScoreModel` from a checkpoint, verifying it against its card.

    Checks, in order: the card exists and parses; the weights file's sha256 equals the card's
    (catches corruption and swapped files); the tensors read as safetensors; their names and
    shapes equal those of the network the card describes. Any failure is an :class:`InputError`.
    The model comes back in eval mode on ``device``.
    """
    card = read_card(path)
    _, directory = _resolve(path)
    weights_path = directory / card["weights"].get("file", WEIGHTS_FILE)
    if not weights_path.is_file():
        raise InputError(weights_path, "weights file named by the model card is missing")
    digest = sha256_file(weights_path)
    if digest != card["weights"].get("sha256"):
        raise InputError(weights_path, f"sha256 {digest[:16]}... does not match the model card's "
                                       f"{str(card['weights'].get('sha256'))[:16]}... (corrupt or swapped weights)")
    tensors = load_tensors(weights_path)
    try:
        sde = sde_from_config(card["sde"])
        network = build_network(normalize_network_config(card["network"]),
                                use_flash_attention=torch.device(device).type == "cuda")
    except (ValueError, TypeError, KeyError) as exc:
        raise InputError(directory / CARD_FILE, f"cannot build the model the card describes ({exc})") from None
    expected = {k: tuple(v.shape) for k, v in network.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if missing or unexpected:
        raise InputError(weights_path, f"tensor names do not match the card's network: missing {missing[:3]}"
                                       f"{'...' if len(missing) > 3 else ''}, unexpected {unexpected[:3]}"
                                       f"{'...' if len(unexpected) > 3 else ''}")
    wrong = [(k, found[k], expected[k]) for k in expected if found[k] != expected[k]]
    if wrong:
        k, got, want = wrong[0]
        raise InputError(weights_path, f"{len(wrong)} tensor shapes do not match the card's network, "
                                       f"e.g. {k}: file {list(got)} vs card {list(want)}")
    network.load_state_dict(tensors, strict=True)
    model = NetworkScoreModel(network, sde, card["parametrization"])
    model.card = card  # the provenance travels with the model
    model.checkpoint_path = directory.resolve()  # where it was found (resolve_checkpoint)
    return model.to(device).eval()
