"""Argument types every sub-command shares: numeric ranges, the device, output paths.

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

__all__ = ["DEVICE_HELP", "Window", "device", "float_range", "given_options", "int_range", "output_file", "output_path",
           "remember_defaults"]

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
