"""Running the real Snakemake workflow from tests (shared by test_workflow.py and test_slurm.py).

Workflow jobs call the ``scorerecon`` console script, so the environment handed to Snakemake
(and, through ``sbatch --export=ALL``, to SLURM jobs) has this interpreter's ``bin/`` first on
``PATH``, as ``make demo`` does. Runs are wrapped in ``timeout -k``: Snakemake ignores SIGTERM
while jobs run, so a hung run must be killed to end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
BIN = Path(sys.executable).parent


def workflow_env() -> dict[str, str]:
    """This environment with the interpreter's ``bin/`` (holding ``scorerecon``) first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def snakemake_command(*args: str | os.PathLike, timeout_s: int = 300) -> list[str]:
    """``timeout -k 10 T python -m snakemake --snakefile REPO/Snakefile ARGS``."""
    return ["timeout", "-k", "10", str(timeout_s), sys.executable, "-m", "snakemake",
            "--snakefile", str(SNAKEFILE), *map(str, args)]


def run_snakemake(*args: str | os.PathLike, cwd: Path = REPO, timeout_s: int = 300) -> subprocess.CompletedProcess:
    """Run Snakemake to completion; stdout and stderr merged into ``.stdout``."""
    return subprocess.run(snakemake_command(*args, timeout_s=timeout_s), cwd=cwd, env=workflow_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)


def make_workdir(path: Path) -> Path:
    """A fresh working directory for a run, with the repository's ``data/`` linked in.

    The configs name inputs relative to the working directory (``data/demo/...``), like a user's
    project directory; outputs, ``.snakemake/`` and SLURM logs then stay inside ``path``.
    """
    path.mkdir(parents=True, exist_ok=True)
    (path / "data").symlink_to(REPO / "data", target_is_directory=True)
    return path


def tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


def start_snakemake(*args: str | os.PathLike, cwd: Path, log_path: Path) -> subprocess.Popen:
    """Snakemake started in the background (its own session, so :func:`kill_tree` can kill it all),
    stdout and stderr into ``log_path``: a run a test means to interrupt."""
    with open(log_path, "w") as log:
        return subprocess.Popen(snakemake_command(*args), cwd=cwd, env=workflow_env(), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a process, its process group and every descendant (job processes included)."""
    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for member in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    proc.wait(timeout=30)
    psutil.wait_procs(family, timeout=30)
