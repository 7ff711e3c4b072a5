"""``scorerecon train CONFIG``: train a score prior by denoising score matching, resumably.

The config is a YAML training file (examples in ``workflows/config/train/``); see
:mod:`scorerecon.models.training` for its sections. Output goes to ``--output`` or the config's
``output`` (default ``checkpoints/<name>``): ``model.safetensors`` + ``model_card.json`` (EMA
weights and provenance), ``training_state.*`` (to resume) and ``loss_log.csv.gz``. Rerunning the
same command after an interruption resumes from the last checkpoint (``--restart`` starts over);
a finished run is left as is unless ``--steps`` asks for more.

The config is checked against the training schema (:mod:`scorerecon.models.train_schema`) and
the options against their ranges before anything is read or written: a typo, a wrong type or
``--steps 0`` is one line naming the file and the key. ``--minutes N`` is a wall-clock budget:
the run stops after the first step past it, checkpoints, and the card records the steps done,
``stopped: time_budget`` and ``complete: false`` unless ``training.steps`` was reached (the same
command again continues for another N minutes). ``--batch-size`` overrides ``training.batch_size``
(e.g. 128 on a GPU; part of the run's config, so a resumed run must keep it).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import yaml

from scorerecon.pipelines.errors import InputError
from scorerecon.pipelines.options import DEVICE_HELP, device


def load_config(path: Path) -> dict:
    """Read a training YAML into a dict, with a one-line error for a bad file."""
    if not path.is_file():
        raise InputError(path, "training config does not exist")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(path, f"not valid YAML ({exc})") from None
    if not isinstance(config, dict):
        raise InputError(path, "training config must be a mapping")
    return config


def positive_int(name: str, text: str | None) -> int | None:
    """An option's integer >= 1 (``None`` if not given), or a one-line :class:`InputError`."""
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        raise InputError(None, f"{name} must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise InputError(None, f"{name} must be an integer >= 1, got {value}")
    return value


def positive_minutes(text: str | None) -> float | None:
    """``--minutes``: a finite number > 0 (``None`` if not given), or a one-line :class:`InputError`."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise InputError(None, f"--minutes must be a number > 0, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise InputError(None, f"--minutes must be a number > 0, got {text}")
    return value


def _run(args: argparse.Namespace) -> int:
    import torch

    from scorerecon.models.train_schema import validate_config
    from scorerecon.models.training import STATE_JSON, Trainer

    steps, batch_size = positive_int("--steps", args.steps), positive_int("--batch-size", args.batch_size)
    threads, minutes = positive_int("--threads", args.threads), positive_minutes(args.minutes)
    config = load_config(args.config)
    validate_config(config, args.config)  # before any override, so errors name the file's own keys
    for key, value in (("steps", steps), ("batch_size", batch_size)):
        if value is not None:
            config.setdefault("training", {})[key] = value
    if threads:
        torch.set_num_threads(threads)
    try:
        device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError as exc:
        raise InputError(None, f"--device {args.device!r}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(None, f"--device {args.device}: CUDA is not available in this torch build or machine")
    if device.type == "cuda":
        # same seed + same device -> same result (cuDNN's autotuner and non-deterministic kernels off)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    output = args.output or Path(config.get("output") or Path("checkpoints") / config.get("name", "prior"))
    command = " ".join(shlex.quote(a) for a in ["scorerecon", *sys.argv[1:]]) if args.command is None else args.command
    if not args.restart and (output / "model_card.json").exists() and not (output / STATE_JSON).exists():
        raise InputError(output, "holds a checkpoint without training state (cannot resume); "
                                 "use --restart to train it again from scratch or choose another --output")
    trainer = Trainer(config, output=output, device=device, resume=not args.restart, command=command,
                      base_dir=args.base_dir)
    if args.restart:  # the config and data loaded: only now drop the old state
        for name in (STATE_JSON, "training_state.safetensors"):
            (output / name).unlink(missing_ok=True)
    total = int(trainer.config["training"]["steps"])
    if trainer.step:
        print(f"resuming {output} at step {trainer.step}/{total}", file=sys.stderr)
    card = trainer.run(progress=not args.quiet, budget_s=None if minutes is None else 60.0 * minutes)
    tr = card["training"]
    loss = "n/a" if tr.get("final_loss") is None else f"{tr['final_loss']:.4f}"
    status = "complete" if tr["complete"] else f"stopped by the {minutes:g} min budget, rerun to continue" \
        if tr.get("stopped") == "time_budget" else "incomplete"
    print(f"wrote {output}: {tr['steps']}/{tr['steps_planned']} steps ({status}), final loss {loss}, "
          f"{tr['wall_time_s']:.0f} s ({tr['steps_per_s']} steps/s), "
          f"weights sha256 {card['weights']['sha256'][:16]}...")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a score prior (denoising score matching) from a YAML config")
    parser.add_argument("config", type=Path, help="training YAML (see workflows/config/train/)")
    parser.add_argument("-o", "--output", type=Path, default=None, help="checkpoint directory (default: config's)")
    parser.add_argument("--steps", metavar="N", default=None,
                        help="override training.steps (e.g. to extend a run)")
    parser.add_argument("--minutes", metavar="N", default=None,
                        help="wall-clock budget: stop after the first step past N minutes and checkpoint "
                             "(card: stopped=time_budget; run again to continue)")
    parser.add_argument("--batch-size", metavar="B", default=None,
                        help="override training.batch_size (e.g. 128 on a GPU)")
    parser.add_argument("--device", type=device, default="auto", help=DEVICE_HELP)
    parser.add_argument("--threads", metavar="N", default=None,
                        help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--restart", action="store_true", help="ignore an existing training state and start over")
    parser.add_argument("--base-dir", type=Path, default=None,
                        help="directory relative data paths resolve against (default: current directory)")
    parser.add_argument("--command", default=None, help=argparse.SUPPRESS)  # recorded in the card
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run)
