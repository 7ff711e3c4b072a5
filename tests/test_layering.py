"""The package's layering, checked on the source: an AST scan of every import.

* ``models/`` (the score core) imports neither ``modalities/`` nor ``pipelines/``;
* ``modalities/`` (formats and physics) imports no ``pipelines/``;
* the neutral modules of the top package (``scorerecon/*.py``: errors, hashing, hardware, the
  training-source hook) import none of the three.

Imports inside functions count as much as module-level ones, and so do ``importlib.import_module``
/ ``__import__`` calls with a literal module name. A failure lists every offending line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: folder (package) -> the scorerecon sub-packages it must not import
FORBIDDEN = {
    "models": ("scorerecon.modalities", "scorerecon.pipelines"),
    "modalities": ("scorerecon.pipelines",),
    "scorerecon": ("scorerecon.models", "scorerecon.modalities", "scorerecon.pipelines"),
}
#: the folders' installed package names (pyproject's package-dir)
PACKAGE = {"models": "scorerecon.models", "modalities": "scorerecon.modalities", "scorerecon": "scorerecon",
           "pipelines": "scorerecon.pipelines"}


def _module_name(folder: str, path: Path) -> str:
    rel = path.relative_to(REPO / folder).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join([PACKAGE[folder], *parts])


def imported_modules(path: Path, module: str) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in ``path`` (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            found += [(node.lineno, f"{name}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "__import__"):
                found.append((node.lineno, node.args[0].value))
    return found


def offenders(folder: str) -> list[str]:
    root = REPO / folder
    paths = sorted(root.rglob("*.py")) if folder != "scorerecon" else sorted(root.glob("*.py"))
    bad = []
    for path in paths:
        for line, name in imported_modules(path, _module_name(folder, path)):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[folder]):
                bad.append(f"{path.relative_to(REPO)}:{line} imports {name}")
    return sorted(set(bad))


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_no_upward_imports(folder: str) -> None:
    bad = offenders(folder)
    assert not bad, f"{folder}/ must not import {', '.join(FORBIDDEN[folder])}:\n" + "\n".join(bad)


def test_the_scan_sees_imports(tmp_path) -> None:
    """The scanner finds absolute, relative, in-function and import_module imports."""
    src = tmp_path / "m.py"
    src.write_text("import scorerecon.pipelines.errors\nfrom ..pipelines import cli\n"
                   "def f():\n    from scorerecon.pipelines.ingest import read_sources\n"
                   "    importlib.import_module('scorerecon.pipelines.report')\n")
    names = {name for _, name in imported_modules(src, "scorerecon.models.m")}
    assert {"scorerecon.pipelines.errors", "scorerecon.pipelines", "scorerecon.pipelines.ingest",
            "scorerecon.pipelines.report"} <= names
