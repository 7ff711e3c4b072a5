"""One error type for everything a user can get wrong, so the CLI can print one clear line.

Readers, writers and tasks raise :class:`InputError` naming the offending file and the problem;
the CLI turns it into ``scorerecon: error: <file>: <problem>`` and a non-zero exit, with no
traceback. Anything else escaping is a bug and keeps its traceback.

It lives in the neutral top package (imported by ``models/``, ``modalities/`` and ``pipelines/``
alike); :mod:`scorerecon.pipelines.errors` re-exports it under its historical name.
"""

from __future__ import annotations

from os import PathLike

__all__ = ["InputError"]


class InputError(Exception):
    """A problem with a user's input file, store or option, reported as one line."""

    def __init__(self, path: str | PathLike | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        self.problem = " ".join(str(problem).split())  # always one line
        super().__init__(self.one_line())

    def one_line(self) -> str:
        return f"{self.path}: {self.problem}" if self.path else self.problem
