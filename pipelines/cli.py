"""The ``scorerecon`` command line: one sub-command per pipeline step.

Each step lives in its own module exposing ``register(subparsers)``; this file only wires them.
Only the module of the command being run is imported (the others are listed from their
docstrings), so ``scorerecon ingest`` does not pay for torch or matplotlib at start-up.

Whatever goes wrong ends in exactly one line on stderr, never a traceback:

* a bad option (argparse) or an :class:`~scorerecon.pipelines.errors.InputError` from a reader,
  writer or task: ``scorerecon: error: <file>: <problem>``, exit 2;
* an ``OSError`` naming a file (permission denied, disk full, ...): the same form, exit 2;
* anything else is a bug: ``scorerecon: error: internal error in <module>:<line>: <Type>: <message>``,
  exit 1;
* ctrl-C (even during start-up): ``scorerecon: interrupted``, exit 130;
* a closed stdout pipe (``scorerecon info x | head``): silent, exit 141 (128 + SIGPIPE), like
  any Unix filter.

``--debug`` (anywhere on the command line) or ``SCORERECON_DEBUG=1`` prints the traceback too.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import importlib.util
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from scorerecon import __version__
from scorerecon.pipelines.errors import InputError

# sub-command modules, in the order they appear in --help
COMMAND_MODULES = [
    "scorerecon.pipelines.ingest",
    "scorerecon.pipelines.info",
    "scorerecon.pipelines.export",
    "scorerecon.pipelines.train",
    "scorerecon.pipelines.sample",
    "scorerecon.pipelines.reconstruct",
    "scorerecon.pipelines.evaluate",
    "scorerecon.pipelines.provenance",
    "scorerecon.pipelines.report",
]


def _command_name(module_name: str) -> str:
    return module_name.rsplit(".", 1)[1]


def _summary(module_name: str) -> str:
    """First docstring line of a command module, read without importing it."""
    spec = importlib.util.find_spec(module_name)
    if spec is None or spec.origin is None:
        return ""
    doc = ast.get_docstring(ast.parse(Path(spec.origin).read_text(encoding="utf-8"))) or ""
    first = doc.strip().splitlines()[0] if doc.strip() else ""
    return first.split(":", 1)[1].strip() if first.startswith("``scorerecon") and ":" in first else first


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``scorerecon: error: ...``, exit 2), without the usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"scorerecon: error: {' '.join(message.split())} (see '{self.prog} --help')", file=sys.stderr)
        raise SystemExit(2)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The full parser; with ``argv``, only its command's module is imported (the rest are listed)."""
    chosen = None
    if argv is not None:
        chosen = next((a for a in argv if not a.startswith("-")), "")
    parser = OneLineParser(
        prog="scorerecon",
        description="Score-based diffusion reconstruction: ingest raw data into Zarr, train priors, "
        "reconstruct, evaluate and export.",
    )
    parser.add_argument("--version", action="version", version=f"scorerecon {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of an error too (also accepted after the command)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        if chosen is not None and _command_name(module_name) != chosen:
            if importlib.util.find_spec(module_name) is not None:
                subparsers.add_parser(_command_name(module_name), help=_summary(module_name))
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # step not built yet
            raise
        module.register(subparsers)
    return parser


def _dask_client():
    """Connect to a shared dask scheduler when ``DASK_SCHEDULER_ADDRESS`` is set, else ``None``.

    This is how chunk-parallel steps run on a dask-jobqueue cluster started beside the workflow
    (docs/cluster.md); without the variable dask's threaded scheduler runs inside the job.
    """
    import dask

    address = dask.config.get("scheduler-address", None)
    if not address:
        return None
    try:
        from distributed import Client
    except ImportError:
        raise InputError(None, f"DASK_SCHEDULER_ADDRESS={address} is set but dask.distributed is not installed "
                               "(pip install 'scorerecon[cluster]')") from None
    return Client(address)


DEBUG_ENV = "SCORERECON_DEBUG"
_PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the folder holding models/, modalities/, pipelines/


def _where(exc: BaseException) -> str:
    """``<file>:<line>`` of the innermost project frame of ``exc``'s traceback (else the innermost frame)."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if Path(f.filename).resolve().is_relative_to(_PACKAGE_ROOT)
            and ".venv" not in Path(f.filename).parts]
    frame = (ours or frames or [None])[-1]
    if frame is None:
        return "scorerecon"
    path = Path(frame.filename).resolve()
    shown = path.relative_to(_PACKAGE_ROOT) if path.is_relative_to(_PACKAGE_ROOT) else path
    return f"{shown}:{frame.lineno}"


def _fail(message: str, code: int, exc: BaseException | None, debug: bool) -> int:
    if debug and exc is not None:
        traceback.print_exception(exc, file=sys.stderr)
    print(f"scorerecon: error: {' '.join(message.split())}", file=sys.stderr)
    return code


def _run(argv: list[str]) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    client = _dask_client()
    try:
        result = args.func(args)
    finally:
        if client is not None:
            client.close()
    sys.stdout.flush()  # a closed pipe shows up here, inside the handlers below
    return int(result or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every failure is one line on stderr and a non-zero exit (module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    try:
        return _run(argv)
    except SystemExit as exc:  # argparse: --help / --version (0) or a usage error (already printed)
        if exc.code in (0, None):
            raise
        return exc.code if isinstance(exc.code, int) else 2
    except InputError as exc:
        return _fail(exc.one_line(), 2, exc, debug)
    except KeyboardInterrupt:
        print("scorerecon: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of our stdout went away (`| head`): stop quietly, and keep Python's final
        # flush at exit from reporting the same broken pipe
        with contextlib.suppress(OSError, ValueError):  # ValueError: stdout captured in-process
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except MemoryError as exc:
        return _fail(f"out of memory in {_where(exc)} (use smaller --crop / --slices / --n, or a larger machine)",
                     1, exc, debug)
    except OSError as exc:
        if exc.filename is not None:
            return _fail(f"{exc.filename}: {exc.strerror or exc}", 2, exc, debug)
        return _fail(f"{exc.strerror or exc} (in {_where(exc)})", 1, exc, debug)
    except Exception as exc:
        hint = "" if debug else " (rerun with --debug for the traceback)"
        return _fail(f"internal error in {_where(exc)}: {type(exc).__name__}: {exc}{hint}", 1, exc, debug)


if __name__ == "__main__":
    sys.exit(main())
