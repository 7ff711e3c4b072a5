"""The ``scorerecon`` command line: one sub-command per pipeline step.

Each step lives in its own module exposing ``register(subparsers)``; this file only wires them
and turns :class:`~scorerecon.pipelines.errors.InputError` into one line on stderr and exit 2.
Only the module of the command being run is imported (the others are listed from their
docstrings), so ``scorerecon ingest`` does not pay for torch or matplotlib at start-up.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import sys
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


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The full parser; with ``argv``, only its command's module is imported (the rest are listed)."""
    chosen = None
    if argv is not None:
        chosen = next((a for a in argv if not a.startswith("-")), "")
    parser = argparse.ArgumentParser(
        prog="scorerecon",
        description="Score-based diffusion reconstruction: ingest raw data into Zarr, train priors, "
        "reconstruct, evaluate and export.",
    )
    parser.add_argument("--version", action="version", version=f"scorerecon {__version__}")
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


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        client = _dask_client()
        try:
            result = args.func(args)
        finally:
            if client is not None:
                client.close()
    except InputError as exc:
        print(f"scorerecon: error: {exc.one_line()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("scorerecon: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
