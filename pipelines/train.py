"""``scorerecon train CONFIG``: train a score prior by denoising score matching, resumably.

The config is a YAML training file (examples in ``workflows/config/train/``); see
:mod:`scorerecon.models.training` for its sections. Output goes to ``--output`` or the config's
``output`` (default ``checkpoints/<name>``): ``model.safetensors`` + ``model_card.json`` (EMA
weights and provenance), ``training_state.*`` (to resume) and ``loss_log.csv``. Rerunning the
same command after an interruption resumes from the last checkpoint (``--restart`` starts over);
a finished run is left as is unless ``--steps`` asks for more.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import yaml

from scorerecon.pipelines.errors import InputError


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


def _run(args: argparse.Namespace) -> int:
    import torch

    from scorerecon.models.training import STATE_JSON, Trainer

    config = load_config(args.config)
    if args.steps is not None:
        config.setdefault("training", {})["steps"] = args.steps
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        # same seed + same device -> same result (cuDNN's autotuner and non-deterministic kernels off)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    output = args.output or Path(config.get("output") or Path("checkpoints") / config.get("name", "prior"))
    if args.restart:
        for name in (STATE_JSON, "training_state.safetensors"):
            (output / name).unlink(missing_ok=True)
    command = " ".join(shlex.quote(a) for a in ["scorerecon", *sys.argv[1:]]) if args.command is None else args.command
    if not args.restart and (output / "model_card.json").exists() and not (output / STATE_JSON).exists():
        raise InputError(output, "holds a checkpoint without training state (cannot resume); "
                                 "use --restart to train it again from scratch or choose another --output")
    trainer = Trainer(config, output=output, device=device, resume=True, command=command,
                      base_dir=args.base_dir)
    total = int(trainer.config["training"]["steps"])
    if trainer.step:
        print(f"resuming {output} at step {trainer.step}/{total}", file=sys.stderr)
    card = trainer.run(progress=not args.quiet)
    tr = card["training"]
    print(f"wrote {output}: {tr['steps']} steps, final loss {tr['final_loss']:.4f}, "
          f"{tr['wall_time_s']:.0f} s ({tr['steps_per_s']} steps/s), "
          f"weights sha256 {card['weights']['sha256'][:16]}...")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a score prior (denoising score matching) from a YAML config")
    parser.add_argument("config", type=Path, help="training YAML (see workflows/config/train/)")
    parser.add_argument("-o", "--output", type=Path, default=None, help="checkpoint directory (default: config's)")
    parser.add_argument("--steps", type=int, default=None, help="override training.steps (e.g. to extend a run)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--restart", action="store_true", help="ignore an existing training state and start over")
    parser.add_argument("--base-dir", type=Path, default=None,
                        help="directory relative data paths resolve against (default: current directory)")
    parser.add_argument("--command", default=None, help=argparse.SUPPRESS)  # recorded in the card
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run)
