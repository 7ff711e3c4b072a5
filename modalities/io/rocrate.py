"""Run provenance: a Workflow Run RO-Crate per run folder, its PROV-JSON view, and ``verify``.

The crate (:func:`build_crate`)
    ``RUN_DIR/ro-crate-metadata.json`` makes the run folder itself the RO-Crate root (an
    *attached* crate: every output is a data entity at its own relative path, nothing copied).
    It conforms to the Process, Workflow and Provenance Run Crate profiles (0.5) and is built with
    ``ro-crate-py`` (``rocrate``) from what the run left behind:

    * Snakemake's job records (``.snakemake/metadata/<base64 output path>``: rule, inputs,
      shell command, params, start/end time, conda env hash) -> one ``CreateAction`` per job
      (``instrument`` the rule's ``SoftwareApplication``, ``object`` its inputs and parameter
      values, ``result`` its outputs + log), one ``HowToStep`` per rule in the workflow's
      ``step``, ``ControlAction``\\ s tying steps to jobs, and the ``OrganizeAction`` of the engine
      (Snakemake) whose ``result`` is the workflow-run ``CreateAction``;
    * benchmark TSVs -> ``resourceUsage`` (``PropertyValue``: wall seconds, max RSS, CPU time);
    * stores' attrs -> reader, reader version and the sha256 of every source file (never
      ``attrs["dicom"]``: patient tags stay out);
    * model cards of checkpoints used -> ``SoftwareApplication``-free ``File`` entities for
      weights and card (sha256 of both, the card's own weights sha256, parametrisation, SDE,
      training seed);
    * ``hardware.json``, the software versions of this environment (Python, scorerecon,
      Snakemake, torch, pydicom, zarr, ...), and a snapshot of the workflow definition
      (``workflow/Snakefile``, ``workflow/workflows/*.smk``, the config files) as the crate's
      ``mainEntity``.

    Every file entity carries ``sha256`` and ``contentSize``. A folder output (a Zarr store, a
    DICOM series folder) carries a *tree digest*, written here because neither RO-Crate nor
    Snakemake defines one: sha256 of the sorted lines ``<relative path>\\t<sha256 of file>\\n`` of
    the files below it (Snakemake's ``.snakemake_timestamp`` excluded); an export folder also
    lists its files (``hasPart``) so ``verify`` can name the one that changed.

    Privacy: files are named by sha256 and a path relative to the run folder or the workflow's
    working directory, never by DICOM tags; no attribute value of a source is copied in.

PROV (:func:`crate_to_prov`)
    The same graph as W3C PROV with the ``prov`` package: entities (files, sha256), activities
    (jobs, times), ``used`` / ``wasGeneratedBy`` / ``wasAssociatedWith`` (Snakemake, scorerecon)
    / ``wasDerivedFrom`` (each output from each input of its job); serialised as PROV-JSON.

Verification (:func:`verify`)
    From an output (a file, a folder, or the run folder for everything), recompute its digest,
    find the job that made it and recurse into that job's inputs down to the source files and
    checkpoints (whose weights are also checked against their model card's sha256). The first
    mismatch is an :class:`InputError` naming the file: a tampered output, a changed source or a
    swapped checkpoint each fail with one line.
"""

from __future__ import annotations

import base64
import csv
import datetime
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shlex
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from scorerecon import __version__
from scorerecon.errors import InputError
from scorerecon.modalities.io.store import sha256_file

CRATE_FILE = "ro-crate-metadata.json"
PROV_FILE = "provenance.prov.json"
SNAPSHOT = "workflow"
PROFILES = {
    "https://w3id.org/ro/wfrun/process/0.5": "Process Run Crate",
    "https://w3id.org/ro/wfrun/workflow/0.5": "Workflow Run Crate",
    "https://w3id.org/ro/wfrun/provenance/0.5": "Provenance Run Crate",
    "https://w3id.org/workflowhub/workflow-ro-crate/1.0": "Workflow RO-Crate",
}
WFRUN_TERMS = {
    "sha256": "https://w3id.org/ro/terms/workflow-run#sha256",
    "resourceUsage": "https://w3id.org/ro/terms/workflow-run#resourceUsage",
    "treeSha256": "https://w3id.org/ro/terms/scorerecon#treeSha256",
    "relativePath": "https://w3id.org/ro/terms/scorerecon#relativePath",
}
SOFTWARE = ("scorerecon", "snakemake", "torch", "numpy", "xarray", "zarr", "dask", "pydicom", "nibabel",
            "rasterio", "rio-cogeo", "pystac", "rocrate", "prov", "highdicom", "dicom-anonymizer",
            "ome-zarr-models", "dicomweb-client", "safetensors", "monai")
SKIP_NAMES = {".snakemake_timestamp"}
BENCHMARK_UNITS = {"s": ("wall time", "s"), "max_rss": ("max RSS", "MB"), "max_vms": ("max VMS", "MB"),
                   "cpu_time": ("CPU time", "s"), "mean_load": ("mean load", "%")}


# ----------------------------------------------------------------------------------------------
# digests


def tree_files(folder: Path) -> list[Path]:
    """The files a tree digest covers, sorted (hidden staging names and timestamps excluded)."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in SKIP_NAMES
                  and not p.name.startswith(".partial-"))


def tree_sha256(folder: str | os.PathLike) -> str:
    """sha256 over ``<relative path>\\t<file sha256>\\n`` of every file under ``folder`` (sorted)."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in tree_files(folder):
        digest.update(f"{path.relative_to(folder).as_posix()}\t{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def digest(path: Path) -> str:
    """sha256 of a file, tree digest of a folder."""
    return tree_sha256(path) if path.is_dir() else sha256_file(path)


# ----------------------------------------------------------------------------------------------
# reading what the run left


def snakemake_records(workdir: Path) -> dict[Path, dict[str, Any]]:
    """Snakemake's per-output job records under ``workdir/.snakemake/metadata``, by resolved output path."""
    meta = workdir / ".snakemake" / "metadata"
    records: dict[Path, dict[str, Any]] = {}
    if not meta.is_dir():
        return records
    for entry in meta.rglob("*"):
        if not entry.is_file():
            continue
        encoded = "".join(part.lstrip("@") for part in entry.relative_to(meta).parts)
        try:
            output = base64.urlsafe_b64decode(encoded).decode()
            record = json.loads(entry.read_text())
        except (ValueError, UnicodeDecodeError):
            continue
        path = Path(output)
        records[(path if path.is_absolute() else workdir / path).resolve()] = record
    return records


def _benchmark(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    if not rows:
        return []
    usage = []
    for key, (name, unit) in BENCHMARK_UNITS.items():
        value = rows[-1].get(key)
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        usage.append({"name": name, "value": number, "unitText": unit, "propertyID": f"snakemake-benchmark:{key}"})
    return usage


def _cli_options(shellcmd: str) -> dict[str, str]:
    """``--name value`` pairs of the scorerecon call in a job's shell command (seeds, NFE, formats ...)."""
    try:
        words = shlex.split(shellcmd.split(">", 1)[0])
    except ValueError:
        return {}
    options = {}
    for i, word in enumerate(words):
        if word.startswith("--") and i + 1 < len(words) and not words[i + 1].startswith("-"):
            options[word[2:]] = words[i + 1]
    return options


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in SOFTWARE:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    found["scorerecon"] = __version__
    return found


def _store_summary(path: Path, relpath: Any) -> dict[str, Any]:
    """Reader and source sha256s of a complete store (root attrs only; no DICOM tags)."""
    try:
        import zarr

        root = zarr.open_group(path, mode="r")
        groups = list(root.attrs.get("groups", ["/"]))
        node = root if groups[0] == "/" else root[groups[0].strip("/")]
        attrs = dict(node.attrs)
    except Exception:
        return {}
    sources = attrs.get("source_files") or []
    if isinstance(sources, str):
        sources = json.loads(sources)
    return {
        "reader": attrs.get("reader"), "reader_version": attrs.get("reader_version"), "groups": groups,
        "sources": [{"path": relpath(Path(s["path"])), "sha256": s["sha256"], "bytes": s.get("bytes")}
                    for s in sources if isinstance(s, dict) and s.get("path")],
    }


# ----------------------------------------------------------------------------------------------
# building the crate


class _Builder:
    """Collects entities for one run folder; ids are paths relative to it (or ``#...`` outside it)."""

    def __init__(self, run_dir: Path, workdir: Path) -> None:
        from rocrate.rocrate import ROCrate

        self.run_dir, self.workdir = run_dir, workdir
        self.crate = ROCrate(version="1.1")
        self.crate.metadata.extra_terms = dict(WFRUN_TERMS)
        self.entities: dict[str, Any] = {}

    def relpath(self, path: Path) -> str:
        """Path of a file relative to the workflow working directory (else its name): no absolute paths."""
        path = Path(path)
        for base in (self.workdir, self.run_dir):
            try:
                return os.path.relpath(path.resolve(), base)
            except ValueError:
                continue
        return path.name

    def inside(self, path: Path) -> bool:
        try:
            path.resolve().relative_to(self.run_dir)
            return True
        except ValueError:
            return False

    def entity(self, path: Path, **extra: Any) -> Any:
        """The data entity of one path (file or folder), created once, with its digest."""
        from rocrate.model.contextentity import ContextEntity

        path = path.resolve()
        inside = self.inside(path)
        key = (os.path.relpath(path, self.run_dir) + ("/" if path.is_dir() else "")) if inside \
            else "#input:" + self.relpath(path)
        if key in self.entities:
            for name, value in extra.items():
                self.entities[key][name] = value
            return self.entities[key]
        props: dict[str, Any] = {"name": path.name, "relativePath": self.relpath(path)}
        if not path.exists():
            props["description"] = "missing when the crate was built"
        elif path.is_dir():
            props["treeSha256"] = tree_sha256(path)
        else:
            props.update({"sha256": sha256_file(path), "contentSize": path.stat().st_size})
        props.update(extra)
        if inside:
            if path.is_dir():
                entity = self.crate.add_dataset(source=None, dest_path=key, properties=props)
            else:
                entity = self.crate.add_file(source=None, dest_path=key, properties=props)
        else:
            props["@type"] = "Dataset" if path.is_dir() else "File"
            props["description"] = props.get("description", "input outside the run folder (not in the crate)")
            entity = self.crate.add(ContextEntity(self.crate, key, properties=props))
        self.entities[key] = entity
        if inside and path.is_dir() and not path.name.endswith(".zarr"):
            parts = [self.entity(child) for child in tree_files(path)]
            entity["hasPart"] = parts
        return entity

    def context(self, identifier: str, props: dict[str, Any]) -> Any:
        from rocrate.model.contextentity import ContextEntity

        if identifier not in self.entities:
            self.entities[identifier] = self.crate.add(ContextEntity(self.crate, identifier, properties=props))
        return self.entities[identifier]


def _snapshot_workflow(run_dir: Path, snakefile: Path | None, configfiles: list[Path]) -> list[Path]:
    """Copy the workflow definition (Snakefile, workflows/*.smk, config) into ``RUN_DIR/workflow``."""
    if snakefile is None or not snakefile.is_file():
        return []
    target = run_dir / SNAPSHOT
    if target.exists():
        shutil.rmtree(target)
    (target / "workflows").mkdir(parents=True)
    copied = [Path(shutil.copy2(snakefile, target / "Snakefile"))]
    for smk in sorted((snakefile.parent / "workflows").glob("*.smk")):
        copied.append(Path(shutil.copy2(smk, target / "workflows" / smk.name)))
    for config in configfiles:
        if config.is_file():
            (target / "config").mkdir(exist_ok=True)
            copied.append(Path(shutil.copy2(config, target / "config" / config.name)))
    return copied


def _model_card(card_path: Path) -> dict[str, Any]:
    """Fields of a model card worth repeating in the crate (never its data paths)."""
    try:
        card = json.loads(card_path.read_text())
    except (OSError, ValueError):
        return {}
    training = card.get("training") if isinstance(card.get("training"), dict) else {}
    fields = {
        "modelName": card.get("name"),
        "parametrization": card.get("parametrization"),
        "sde": json.dumps(card.get("sde"), sort_keys=True) if card.get("sde") else None,
        "cardWeightsSha256": (card.get("weights") or {}).get("sha256"),
        "trainingSeed": card.get("seed", training.get("seed")),
        "trainingSteps": card.get("steps", training.get("steps")),
    }
    return {k: v for k, v in fields.items() if v is not None}


def build_crate(run_dir: str | os.PathLike, workdir: str | os.PathLike | None = None,
                snakefile: str | os.PathLike | None = None,
                configfiles: Iterable[str | os.PathLike] = ()) -> Path:
    """Write ``RUN_DIR/ro-crate-metadata.json`` and ``RUN_DIR/provenance.prov.json`` (module docstring).

    ``workdir`` is where Snakemake ran (holding ``.snakemake/``), by default the current folder;
    ``snakefile`` and ``configfiles`` are snapshotted into ``RUN_DIR/workflow/``.
    """

    run_dir = Path(run_dir).resolve()
    workdir = Path(workdir or os.getcwd()).resolve()
    if not run_dir.is_dir():
        raise InputError(run_dir, "run folder does not exist")
    # this run's jobs: records of outputs still present, not the crate's own files from an earlier build
    records = {out: rec for out, rec in snakemake_records(workdir).items()
               if _under(out, run_dir) and out.exists() and out.name not in (CRATE_FILE, PROV_FILE)}
    if not records:
        raise InputError(run_dir, f"no Snakemake job records for this folder in {workdir / '.snakemake'} "
                                  "(run the workflow first, or pass --workdir where it ran)")
    b = _Builder(run_dir, workdir)
    crate = b.crate
    now = datetime.datetime.now(datetime.UTC).isoformat()
    root = crate.root_dataset
    root["name"] = f"scorerecon run {run_dir.name}"
    root["description"] = ("Outputs of a scorerecon Snakemake run with their provenance: every job, its inputs, "
                           "parameters, outputs, software, checkpoints and timings (sha256 of every file).")
    root["datePublished"] = now
    root["license"] = "https://spdx.org/licenses/CC-BY-4.0"
    root["workdirRelative"] = os.path.relpath(workdir, run_dir)  # where relativePath values are rooted
    root["conformsTo"] = [b.context(uri, {"@type": "CreativeWork", "name": name, "version": uri.rsplit("/", 1)[1]})
                          for uri, name in PROFILES.items()]

    versions = _versions()
    software = {name: b.context(f"#software:{name}", {"@type": "SoftwareApplication", "name": name,
                                                      "version": version})
                for name, version in versions.items()}
    engine = software.get("snakemake") or b.context("#software:snakemake", {"@type": "SoftwareApplication",
                                                                            "name": "snakemake"})
    engine["url"] = "https://snakemake.github.io"

    copied = _snapshot_workflow(run_dir, Path(snakefile).resolve() if snakefile else None,
                                [Path(c).resolve() for c in configfiles])
    workflow_entity = None
    if copied:
        workflow_entity = b.entity(copied[0], **{"@type": ["File", "SoftwareSourceCode", "ComputationalWorkflow"]})
        workflow_entity["name"] = "scorerecon Snakemake workflow"
        workflow_entity["programmingLanguage"] = b.context(
            "https://w3id.org/workflowhub/workflow-ro-crate#snakemake",
            {"@type": "ComputerLanguage", "name": "Snakemake", "identifier": {"@id": "https://snakemake.readthedocs.io"},
             "url": {"@id": "https://snakemake.github.io"}, "version": versions.get("snakemake", "")})
        workflow_entity["hasPart"] = [b.entity(p) for p in copied[1:]]
        workflow_entity["conformsTo"] = b.context("https://bioschemas.org/profiles/ComputationalWorkflow/1.0-RELEASE",
                                                  {"@type": "CreativeWork", "name": "ComputationalWorkflow profile"})
        root["mainEntity"] = workflow_entity

    # one tool + step per rule, one CreateAction per job (jobs sorted by start time)
    jobs: dict[tuple, dict[str, Any]] = {}
    for output, rec in records.items():
        key = (rec.get("rule"), rec.get("job_hash"), rec.get("starttime"))
        jobs.setdefault(key, {"record": rec, "outputs": []})["outputs"].append(output)
    steps, tools, control_actions, all_inputs, all_outputs, model_entities = {}, {}, [], [], [], []
    formal: dict[str, Any] = {}
    run_start, run_end = None, None
    for (rule, _, _), job in sorted(jobs.items(), key=lambda item: item[1]["record"].get("starttime") or 0):
        rec = job["record"]
        if rule not in tools:
            tools[rule] = b.context(f"#tool:{rule}", {
                "@type": "SoftwareApplication", "name": f"rule {rule}",
                "description": rec.get("code", ""), "softwareRequirements": [software["scorerecon"]]})
            steps[rule] = b.context(f"#step:{rule}", {"@type": "HowToStep", "name": rule,
                                                      "position": str(len(steps)), "workExample": tools[rule]})
        inputs = [b.entity(Path(p) if Path(p).is_absolute() else workdir / p) for p in rec.get("input", [])]
        options = _cli_options(rec.get("shellcmd") or "")
        parameters = []
        for name, value in options.items():
            parameter = b.context(f"#param:{rule}:{name}", {"@type": "FormalParameter", "name": name,
                                                           "additionalType": "Text", "valueRequired": False})
            if parameter.id not in formal:
                formal[parameter.id] = parameter
                tools[rule].append_to("input", parameter)
            parameters.append(b.context(f"#pv:{rec.get('job_hash')}:{name}", {
                "@type": "PropertyValue", "name": name, "value": value, "exampleOfWork": parameter}))
        for card_input in [p for p in rec.get("input", []) if Path(p).name == "model_card.json"]:
            card_path = Path(card_input) if Path(card_input).is_absolute() else workdir / card_input
            card_entity = b.entity(card_path)
            for key, value in _model_card(card_path).items():
                card_entity[key] = value
            model_entities.append(card_entity)
        outputs = [b.entity(out) for out in job["outputs"]]
        logs = [b.entity(Path(p) if Path(p).is_absolute() else workdir / p) for p in rec.get("log", [])
                if (Path(p) if Path(p).is_absolute() else workdir / p).exists()]
        for out_path, out_entity in zip(job["outputs"], outputs, strict=True):
            if out_path.name.endswith(".zarr") and out_path.is_dir():
                summary = _store_summary(out_path, b.relpath)
                if summary:
                    out_entity["reader"] = summary["reader"]
                    out_entity["readerVersion"] = summary["reader_version"]
                    out_entity["storeGroups"] = summary["groups"]
                    out_entity["isBasedOn"] = [b.entity(workdir / s["path"]) if (workdir / s["path"]).exists()
                                               else b.context(f"#source-sha256:{s['sha256']}", {
                                                   "@type": "File", "name": Path(s["path"]).name,
                                                   "relativePath": s["path"], "sha256": s["sha256"]})
                                               for s in summary["sources"]]
        start = _iso(rec.get("starttime"))
        end = _iso(rec.get("endtime"))
        run_start = min(filter(None, [run_start, start]), default=None)
        run_end = max(filter(None, [run_end, end]), default=None)
        props = {"name": f"{rule} job", "startTime": start, "endTime": end,
                 "actionStatus": {"@id": "http://schema.org/CompletedActionStatus"},
                 "description": rec.get("shellcmd", ""),
                 "agent": b.context("#agent:snakemake-job", {"@type": "SoftwareApplication",
                                                             "name": "Snakemake job process"})}
        bench = _benchmark_for(run_dir, rule, job["outputs"])
        if bench:
            props["resourceUsage"] = [b.context(f"#usage:{rec.get('job_hash')}:{u['propertyID'].split(':')[1]}",
                                                {"@type": "PropertyValue", **u}) for u in bench]
        if rec.get("software_stack_hash"):
            props["environment"] = [b.context(f"#env:{rec['software_stack_hash']}", {
                "@type": "PropertyValue", "name": "software_stack_hash", "value": rec["software_stack_hash"]})]
        action = crate.add_action(tools[rule], identifier=f"#job:{rule}:{rec.get('job_hash')}",
                                  object=inputs + parameters, result=outputs + logs,
                                  properties={k: v for k, v in props.items() if v is not None})
        control_actions.append(b.context(f"#control:{rule}:{rec.get('job_hash')}", {
            "@type": "ControlAction", "name": f"orchestrate {rule}", "instrument": steps[rule], "object": action}))
        all_inputs += [e for e in inputs if e.id.startswith("#input:")]
        all_outputs += outputs

    hardware = run_dir / "hardware.json"
    if workflow_entity is not None:
        workflow_entity["step"] = list(steps.values())
        workflow_entity["input"] = list(formal.values())
    run_props = {"name": f"scorerecon workflow run {run_dir.name}", "startTime": run_start, "endTime": run_end,
                 "actionStatus": {"@id": "http://schema.org/CompletedActionStatus"}}
    if hardware.is_file():
        run_props["description"] = "hardware: " + _hardware_line(hardware)
    unique_inputs = list({e.id: e for e in all_inputs}.values())
    run_action = crate.add_action(workflow_entity or tools[next(iter(tools))], identifier="#run",
                                  object=unique_inputs, result=list({e.id: e for e in all_outputs}.values()),
                                  properties={k: v for k, v in run_props.items() if v is not None})
    b.context("#organize", {"@type": "OrganizeAction", "name": "Snakemake run", "instrument": engine,
                            "object": control_actions, "result": run_action, "startTime": run_start,
                            "endTime": run_end})
    if model_entities:
        root["about"] = model_entities

    # PROV-JSON of the same graph, then the crate itself (which lists the PROV file)
    doc = crate_to_prov(crate.metadata.generate())
    prov_path = run_dir / PROV_FILE
    _atomic_write(prov_path, doc.serialize(format="json", indent=2))
    b.entity(prov_path, encodingFormat="application/json", description="W3C PROV-JSON view of this crate")
    _atomic_write(run_dir / CRATE_FILE, json.dumps(crate.metadata.generate(), indent=2) + "\n")
    return run_dir / CRATE_FILE


def _under(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def _iso(timestamp: float | None) -> str | None:
    if not timestamp:
        return None
    return datetime.datetime.fromtimestamp(float(timestamp), datetime.UTC).isoformat()


def _benchmark_for(run_dir: Path, rule: str, outputs: list[Path]) -> list[dict[str, Any]]:
    """Benchmark rows of the job: workflows/*.smk write benchmarks/<rule>/<wildcards>.tsv."""
    folder = run_dir / "benchmarks"
    candidates = [folder / f"{rule}.tsv"]
    for out in outputs:
        rel = out.relative_to(run_dir).parts
        stem = re.sub(r"\.(zarr|png|json|html)$", "", out.name)
        if rule == "export" and len(rel) >= 3:
            candidates.append(folder / rule / f"{rel[-2]}.{rel[-1]}.tsv")
        candidates.append(folder / rule / f"{stem}.tsv")
    for candidate in candidates:
        usage = _benchmark(candidate)
        if usage:
            return usage
    return []


def _hardware_line(path: Path) -> str:
    try:
        data = json.loads(path.read_text())
    except ValueError:
        return "see hardware.json"
    flat = json.dumps(data, sort_keys=True)
    return flat if len(flat) < 400 else flat[:397] + "..."


def _atomic_write(path: Path, text: str) -> None:
    partial = path.with_name(f".partial-{path.name}")
    partial.write_text(text)
    os.replace(partial, path)


# ----------------------------------------------------------------------------------------------
# PROV


def crate_to_prov(metadata: dict[str, Any]) -> Any:
    """A :class:`prov.model.ProvDocument` of a crate's jobs, files and agents (module docstring)."""
    from prov.model import ProvDocument

    graph = {e["@id"]: e for e in metadata["@graph"]}
    doc = ProvDocument()
    doc.add_namespace("run", "urn:scorerecon:run:")
    doc.add_namespace("scorerecon", "https://w3id.org/ro/terms/scorerecon#")
    engine = doc.agent("run:snakemake", {"prov:type": "prov:SoftwareAgent", "prov:label": "Snakemake"})
    tool = doc.agent("run:scorerecon", {"prov:type": "prov:SoftwareAgent", "prov:label": f"scorerecon {__version__}"})

    def ident(entity_id: str) -> str:
        return "run:" + re.sub(r"[^A-Za-z0-9_.\-/]", "_", entity_id.lstrip("#"))

    entities: dict[str, Any] = {}

    def entity(ref: dict[str, Any]) -> Any:
        node = graph.get(ref["@id"], ref)
        if ref["@id"] not in entities:
            attrs = {"prov:label": node.get("relativePath") or node["@id"]}
            if node.get("sha256"):
                attrs["scorerecon:sha256"] = node["sha256"]
            if node.get("treeSha256"):
                attrs["scorerecon:treeSha256"] = node["treeSha256"]
            entities[ref["@id"]] = doc.entity(ident(ref["@id"]), attrs)
        return entities[ref["@id"]]

    for node in graph.values():
        if node.get("@type") != "CreateAction" or node["@id"] == "#run":
            continue
        start = node.get("startTime")
        end = node.get("endTime")
        activity = doc.activity(ident(node["@id"]), start and datetime.datetime.fromisoformat(start),
                                end and datetime.datetime.fromisoformat(end), {"prov:label": node.get("name", "")})
        doc.wasAssociatedWith(activity, engine)
        doc.wasAssociatedWith(activity, tool)
        used = [entity(r) for r in _refs(node.get("object")) if graph.get(r["@id"], {}).get("@type") != "PropertyValue"]
        for item in used:
            doc.used(activity, item)
        for ref in _refs(node.get("result")):
            made = entity(ref)
            doc.wasGeneratedBy(made, activity)
            for item in used:
                doc.wasDerivedFrom(made, item)
    return doc


def _refs(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    return [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, dict) and "@id" in v]


# ----------------------------------------------------------------------------------------------
# verify


def find_crate(path: str | os.PathLike) -> Path:
    """The ``ro-crate-metadata.json`` of the run folder holding ``path`` (searching upwards)."""
    path = Path(path).resolve()
    for folder in [path, *path.parents] if path.is_dir() else list(path.parents):
        if (folder / CRATE_FILE).is_file():
            return folder / CRATE_FILE
    raise InputError(path, f"not inside a run folder with an RO-Crate ({CRATE_FILE}); "
                           "run `scorerecon provenance crate RUN_DIR` first")


def read_crate(crate_path: str | os.PathLike) -> dict[str, Any]:
    """A run's ``ro-crate-metadata.json``, parsed; a truncated or malformed crate is one :class:`InputError` line."""
    try:
        crate = json.loads(Path(crate_path).read_text())
        if not isinstance(crate, dict) or not all(isinstance(e, dict) and "@id" in e for e in crate["@graph"]):
            raise ValueError("@graph is not a list of entities with an @id")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(crate_path, f"not a readable RO-Crate ({type(exc).__name__}: {exc}); the run's "
                                     "provenance record is damaged: rerun `scorerecon provenance crate`") from None
    return crate


def verify(output: str | os.PathLike, workdir: str | os.PathLike | None = None) -> list[str]:
    """Check ``output`` and everything it was made from against the run's crate.

    Returns one line per verified item (``ok <digest> <path>``); raises :class:`InputError` naming
    the first file whose digest differs, is missing, or whose checkpoint disagrees with its card.
    """
    output = Path(output)
    if not output.exists():
        raise InputError(output, "no such file or folder")
    crate_path = find_crate(output)
    run_dir = crate_path.parent
    graph = {e["@id"]: e for e in read_crate(crate_path)["@graph"]}
    workdir = Path(workdir).resolve() if workdir else _workdir_of(graph, run_dir)
    made_by: dict[str, dict[str, Any]] = {}
    part_of: dict[str, str] = {}
    for node in graph.values():
        if node.get("@type") == "CreateAction" and node["@id"] != "#run":
            for ref in _refs(node.get("result")):
                made_by[ref["@id"]] = node
        for part in _refs(node.get("hasPart")) if node["@id"] != "./" else []:
            part_of.setdefault(part["@id"], node["@id"])
    lines: list[str] = []
    seen: set[str] = set()

    def locate(node: dict[str, Any]) -> Path:
        if node["@id"].startswith("#"):
            return Path(os.path.normpath(workdir / node.get("relativePath", node.get("name", ""))))
        return run_dir / node["@id"]

    def check(entity_id: str) -> None:
        if entity_id in seen or entity_id not in graph:
            return
        seen.add(entity_id)
        node = graph[entity_id]
        if node.get("@type") in ("PropertyValue", "FormalParameter"):
            return
        path = locate(node)
        shown = os.path.relpath(path, os.getcwd()) if _under(path.resolve(), Path.cwd()) else str(path)
        for part in _refs(node.get("hasPart")):
            check(part["@id"])
        if not path.exists():
            raise InputError(shown, "missing: the run's RO-Crate records it but it is gone")
        expected = node.get("treeSha256") or node.get("sha256")
        if expected:
            actual = digest(path)
            if actual != expected:
                what = "folder contents" if path.is_dir() else "file"
                raise InputError(shown, f"{what} changed since the run: sha256 {actual[:16]}... but the RO-Crate "
                                        f"records {expected[:16]}... (tampered or replaced)")
            lines.append(f"ok {expected[:16]} {shown}")
        if node.get("cardWeightsSha256"):
            weights = path.parent / "model.safetensors"
            card_sha = json.loads(path.read_text()).get("weights", {}).get("sha256")
            if weights.exists() and sha256_file(weights) != card_sha:
                raise InputError(weights, "checkpoint weights do not match their model card's sha256 "
                                          "(swapped or corrupted weights)")
        for source in _refs(node.get("isBasedOn")):
            check(source["@id"])
        action = made_by.get(entity_id) or made_by.get(part_of.get(entity_id, ""))
        if action is not None:
            for ref in _refs(action.get("object")):
                check(ref["@id"])

    start = output.resolve()
    rel = os.path.relpath(start, run_dir)
    if start == run_dir:
        targets = [r["@id"] for r in _refs(graph.get("#run", {}).get("result"))]
    else:
        targets = [i for i in (rel, rel + "/") if i in graph]
        if not targets:
            raise InputError(output, "not recorded in the run's RO-Crate (not an output of this run)")
    for target in targets:
        check(target)
    return lines


def _workdir_of(graph: dict[str, dict[str, Any]], run_dir: Path) -> Path:
    """The workflow working directory recorded in the crate (``relativePath`` values are rooted there)."""
    rel = graph.get("./", {}).get("workdirRelative")
    return (run_dir / rel).resolve() if rel else Path.cwd()
