"""Argument types every sub-command shares: numeric ranges, the device, output paths, the engine's options.

They run while argparse parses the command line, so a bad value is refused before any file is
read or any model loaded, as one line (``scorerecon: error: argument --crop: ...``, exit 2; see
:mod:`scorerecon.pipelines.cli`). Upper bounds are sanity limits, far above any real use, that
stop a typo from allocating tens of GiB (``--crop 100000``) or running for days.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from scorerecon.pipelines.errors import InputError

__all__ = ["DEFAULT_COMPILE_MODE", "DEVICE_HELP", "Window", "add_engine_arguments", "device", "engine_config",
           "float_range", "given_options", "int_range", "output_file", "output_path", "remember_defaults"]

DEVICE_HELP = "auto (default: CUDA, then MPS, then CPU; $SCORERECON_DEVICE pins it), cpu, cuda, cuda:N or mps"


def int_range(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """An ``int`` type accepting ``lo <= value <= hi`` (``hi`` None: no upper limit)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            bound = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    parse.__name__ = "int"
    return parse


def float_range(lo: float, hi: float | None = None, lo_open: bool = False) -> Callable[[str], float]:
    """A finite ``float`` type accepting ``lo <= value <= hi`` (``lo < value`` when ``lo_open``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        low_ok = value > lo if lo_open else value >= lo
        if not math.isfinite(value) or not low_ok or (hi is not None and value > hi):
            bound = f"{'>' if lo_open else '>='} {lo:g}" + (f" and <= {hi:g}" if hi is not None else "")
            raise argparse.ArgumentTypeError(f"must be a finite number {bound}, got {text}")
        return value

    parse.__name__ = "float"
    return parse


def device(spec: str) -> str:
    """A device name resolved by the project's one policy (:func:`scorerecon.models.device.resolve_device`).

    Returns the resolved device as a string (``"cpu"``, ``"cuda:0"``), which every step and
    ``torch.device`` accept; an unknown or absent device is refused at parse time.
    """
    from scorerecon.models.device import resolve_device

    try:
        return str(resolve_device(spec))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _checked_path(text: str, kind: str) -> Path:
    from scorerecon.modalities.io.outputs import check_parent

    path = Path(text)
    try:
        check_parent(path)
    except InputError as exc:
        raise argparse.ArgumentTypeError(exc.one_line()) from None
    if path.is_symlink():
        raise argparse.ArgumentTypeError(f"{path}: is a symbolic link; name the {kind} itself")
    if kind == "file" and path.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: is a directory, expected a file name")
    if kind == "folder" and path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: is an existing file, expected a folder")
    return path


def output_file(*suffixes: str) -> Callable[[str], Path]:
    """An output file path: its folder is writable (or creatable), it is not a directory, and it
    ends with one of ``suffixes`` (case-insensitive; none given: any name)."""

    def parse(text: str) -> Path:
        path = _checked_path(text, "file")
        if suffixes and not path.name.lower().endswith(tuple(s.lower() for s in suffixes)):
            raise argparse.ArgumentTypeError(f"{path}: expected a file name ending in {' or '.join(suffixes)}")
        return path

    parse.__name__ = "output file"
    return parse


def output_path(text: str) -> Path:
    """An output path whose kind (file or folder) the command decides: only its folder is checked."""
    return _checked_path(text, "output")


def remember_defaults(parser: argparse.ArgumentParser) -> None:
    """Keep every option's flags and default in the parsed namespace (``_option_defaults``; names starting
    with ``_`` are not recorded as options), so :func:`given_options` can tell what the command line set."""
    table = {a.dest: (tuple(a.option_strings), a.default) for a in parser._actions if a.option_strings}
    parser.set_defaults(_option_defaults=table)


def given_options(args: argparse.Namespace) -> list[tuple[str, ...]]:
    """The flags (with their aliases) whose value differs from the default (see :func:`remember_defaults`)."""
    table = getattr(args, "_option_defaults", {})
    return [flags for dest, (flags, default) in table.items() if getattr(args, dest, default) != default]


class Window(argparse.Action):
    """``--window LO HI``: two finite numbers with ``LO < HI`` (use with ``nargs=2, type=float``)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[Any] | None, option_string: str | None = None) -> None:
        lo, hi = (float(v) for v in values or ())
        if not (math.isfinite(lo) and math.isfinite(hi)) or not lo < hi:
            parser.error(f"argument {option_string}: LO must be below HI (both finite), got {lo:g} {hi:g}")
        setattr(namespace, self.dest, (lo, hi))


#: ``--compile`` without a mode: inductor's autotuned kernels without CUDA graphs (samplers keep
#: the previous prediction between calls, which CUDA graphs' memory pool would overwrite)
DEFAULT_COMPILE_MODE = "max-autotune-no-cudagraphs"


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """The tile engine's options (:class:`~scorerecon.pipelines.engine.EngineConfig`), for every task.

    Every reconstruction runs its prior inside the engine; these choose its precision, compilation
    and batch size. They change speed and memory, never which image a seed gives beyond rounding
    (bf16 is the exception to note: about 0.01-0.1 dB).
    """
    from scorerecon.pipelines.engine import COMPILE_MODES

    group = parser.add_argument_group("engine (every task)")
    group.add_argument("--precision", choices=("auto", "fp32", "tf32", "bf16"), default="auto",
                       help="network precision: auto = bf16 autocast + TF32 on CUDA, fp32 elsewhere")
    group.add_argument("--compile", nargs="?", const=DEFAULT_COMPILE_MODE, default=None, choices=COMPILE_MODES,
                       metavar="MODE", help=f"torch.compile the network (CUDA; MODE default {DEFAULT_COMPILE_MODE}; "
                                            f"choices: {', '.join(COMPILE_MODES)})")
    group.add_argument("--batch-size", type=int_range(1, 100_000), default=None,
                       help="slices x posterior samples (or tiles) per sampler call (default: planned from free "
                            "device memory on CUDA, 4 on CPU)")


def engine_config(args: argparse.Namespace) -> Any:
    """The :class:`~scorerecon.pipelines.engine.EngineConfig` of ``--device/--seed/--precision/--compile/--batch-size``.

    Refuses, as one line, a precision the device lacks (bf16/tf32 are CUDA policies).
    """
    from scorerecon.pipelines.device import precision_policy, resolve_device
    from scorerecon.pipelines.engine import EngineConfig

    precision = getattr(args, "precision", "auto")
    try:
        precision_policy(resolve_device(args.device), precision)
    except ValueError as exc:
        raise InputError(None, f"--precision {precision}: {exc}") from None
    return EngineConfig(device=args.device, seed=int(getattr(args, "seed", 0) or 0), precision=precision,
                        compile=getattr(args, "compile", None), batch_size=getattr(args, "batch_size", None),
                        prefetch=1)
