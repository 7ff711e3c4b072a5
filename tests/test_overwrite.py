"""``--overwrite`` replaces only what scorerecon wrote, never a source or a user's folder (issue 19).

Every case runs the real CLI in-process (``scorerecon.pipelines.cli.main``) on small real files
(a NIfTI volume made here, pydicom's bundled ``CT_small.dcm``) and checks the refusal is one line
and that nothing under the refused path changed (sha256 of every file before and after).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from pydicom.data import get_testdata_file

from scorerecon.modalities.io.outputs import MARKER, MARKER_ATTR, remove_stale_staging
from scorerecon.modalities.io.store import open_store
from scorerecon.pipelines.cli import main


def tree_digest(path: Path) -> dict[str, str]:
    """sha256 of every file under ``path`` (or of ``path`` itself), keyed by relative path."""
    if path.is_file():
        return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()}
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def run(capsys: pytest.CaptureFixture[str], *argv: str | os.PathLike) -> tuple[int, list[str]]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err.strip().splitlines()


def assert_refused(code: int, err: list[str], path: Path, words: str) -> None:
    assert code == 2, err
    assert len(err) == 1, err
    assert err[0].startswith("scorerecon: error:") and str(path) in err[0] and words in err[0], err
    assert "Traceback" not in err[0]


@pytest.fixture
def nifti(tmp_path: Path) -> Path:
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(6, 5, 4)
    path = tmp_path / "src" / "vol.nii.gz"
    path.parent.mkdir()
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0])), path)
    return path


@pytest.fixture
def dicom_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "dicom"
    folder.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), folder / "IM0001.dcm")
    return folder


def test_user_folder_is_never_replaced(tmp_path, nifti, capsys):
    docs = tmp_path / "mydocs"
    docs.mkdir()
    (docs / "thesis.tex").write_text("\\documentclass{article}")
    before = tree_digest(docs)
    code, err = run(capsys, "ingest", nifti, "-o", docs, "--overwrite", "-q")
    assert_refused(code, err, docs, "not an output scorerecon wrote")
    assert tree_digest(docs) == before


def test_the_dicom_folder_being_ingested_is_never_replaced(dicom_dir, capsys):
    before = tree_digest(dicom_dir)
    code, err = run(capsys, "ingest", dicom_dir, "-o", dicom_dir, "--overwrite", "-q")
    assert_refused(code, err, dicom_dir, "a source this command reads")
    assert tree_digest(dicom_dir) == before


def test_the_sources_parent_folder_is_never_replaced(nifti, capsys):
    parent = nifti.parent
    before = tree_digest(parent)
    code, err = run(capsys, "ingest", nifti, "-o", parent, "--overwrite", "-q")
    assert_refused(code, err, parent, "contains")
    assert tree_digest(parent) == before


def test_dicom_export_into_a_user_folder_is_refused(tmp_path, nifti, capsys):
    store = tmp_path / "vol.zarr"
    assert run(capsys, "ingest", nifti, "-o", store, "-q")[0] == 0
    folder = tmp_path / "pacs_upload"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    before = tree_digest(folder)
    code, err = run(capsys, "export", store, "-f", "dicom", "-o", folder, "--overwrite")
    assert_refused(code, err, folder, "not an output scorerecon wrote")
    assert tree_digest(folder) == before


def test_export_over_the_store_it_reads_or_its_source_is_refused(tmp_path, nifti, capsys):
    store = tmp_path / "vol.zarr"
    assert run(capsys, "ingest", nifti, "-o", store, "-q")[0] == 0
    before = tree_digest(store)
    code, err = run(capsys, "export", store, "-f", "omezarr", "-o", store, "--overwrite")
    assert_refused(code, err, store, "a source this command reads")
    assert tree_digest(store) == before
    source = tree_digest(nifti)
    code, err = run(capsys, "export", store, "-f", "nifti", "-o", nifti, "--overwrite")
    assert_refused(code, err, nifti, "a source this command reads")
    assert tree_digest(nifti) == source


def test_scorerecon_outputs_are_replaced_and_marked(tmp_path, nifti, capsys):
    store = tmp_path / "vol.zarr"
    assert run(capsys, "ingest", nifti, "-o", store, "-q")[0] == 0
    marker = json.loads((store / "zarr.json").read_text())["attributes"][MARKER_ATTR]
    assert marker["kind"] == "store" and "zarr.json" in marker["entries"]
    assert not (store / MARKER).exists()  # a Zarr store carries the marker as an attribute, not a file
    assert run(capsys, "ingest", nifti, "-o", store, "--overwrite", "-q")[0] == 0
    assert open_store(store)["image"].shape == (4, 5, 6)
    png = tmp_path / "png"
    assert run(capsys, "export", store, "-f", "png", "-o", png)[0] == 0
    (png / ".snakemake_timestamp").write_text("")  # Snakemake's directory-output stamp is not foreign
    assert run(capsys, "export", store, "-f", "png", "-o", png, "--overwrite")[0] == 0
    assert sorted(p.name for p in png.glob("*.png")) == [f"image_z{k:04d}.png" for k in range(4)]
    assert json.loads((png / MARKER).read_text())["entries"] == [f"image_z{k:04d}.png" for k in range(4)]
    assert [p.name for p in tmp_path.iterdir() if ".partial-" in p.name] == []


def test_a_scorerecon_store_holding_a_user_file_is_refused(tmp_path, nifti, capsys):
    store = tmp_path / "vol.zarr"
    assert run(capsys, "ingest", nifti, "-o", store, "-q")[0] == 0
    (store / "analysis.ipynb").write_text("{}")
    before = tree_digest(store)
    code, err = run(capsys, "ingest", nifti, "-o", store, "--overwrite", "-q")
    assert_refused(code, err, store, "analysis.ipynb")
    assert tree_digest(store) == before


def test_a_store_from_before_the_marker_is_still_replaceable(tmp_path, nifti, capsys):
    store = tmp_path / "old.zarr"
    assert run(capsys, "ingest", nifti, "-o", store, "-q")[0] == 0
    meta = json.loads((store / "zarr.json").read_text())
    del meta["attributes"][MARKER_ATTR]  # what an earlier scorerecon wrote: complete zarr.json, Zarr nodes only
    (store / "zarr.json").write_text(json.dumps(meta))
    assert run(capsys, "ingest", nifti, "-o", store, "--overwrite", "-q")[0] == 0
    assert MARKER_ATTR in json.loads((store / "zarr.json").read_text())["attributes"]
    (store / "image" / "notes.txt").write_text("deep inside a node is not checked, but beside the nodes is:")
    (store / "README").write_text("mine")
    meta = json.loads((store / "zarr.json").read_text())
    del meta["attributes"][MARKER_ATTR]
    (store / "zarr.json").write_text(json.dumps(meta))
    code, err = run(capsys, "ingest", nifti, "-o", store, "--overwrite", "-q")
    assert_refused(code, err, store, "not an output scorerecon wrote")


@pytest.mark.parametrize("case", ["file_where_store_goes", "under_a_file", "symlink"])
def test_unusable_output_paths_are_one_line(tmp_path, nifti, capsys, case):
    plain = tmp_path / "plain.txt"
    plain.write_text("precious")
    if case == "file_where_store_goes":
        out = plain
    elif case == "under_a_file":
        out = plain / "out.zarr"
    else:
        out = tmp_path / "link.zarr"
        out.symlink_to(nifti.parent, target_is_directory=True)
    code, err = run(capsys, "ingest", nifti, "-o", out, "--overwrite", "-q")
    assert code == 2 and len(err) == 1 and str(out) in err[0], err
    assert plain.read_text() == "precious"
    assert nifti.is_file()


def test_reconstruct_over_its_own_input_is_refused_before_the_prior_loads(tmp_path, nifti, capsys):
    store = tmp_path / "vol.zarr"
    assert run(capsys, "ingest", nifti, "-o", store, "-q")[0] == 0
    before = tree_digest(store)
    code, err = run(capsys, "reconstruct", "--task", "ct", "--input", store, "-o", store, "--overwrite",
                    "--views", "8", "--checkpoint", tmp_path / "no_such_prior")
    assert_refused(code, err, store, "a source this command reads")
    assert tree_digest(store) == before


def test_stale_staging_of_a_dead_writer_is_removed(tmp_path, nifti, capsys):
    out = tmp_path / "vol.zarr"
    dead = tmp_path / ".vol.zarr.partial-999999999-deadbeef"  # no such PID
    dead.mkdir()
    (dead / "zarr.json").write_text("{}")
    dead_export = tmp_path / ".partial-999999999-cafe0000-vol.zarr"
    dead_export.write_text("half")
    alive = tmp_path / f".vol.zarr.partial-{os.getpid()}-0000beef"  # a live writer's: kept
    alive.mkdir()
    unrelated = tmp_path / ".other.zarr.partial-999999999-deadbeef"
    unrelated.mkdir()
    no_pid = tmp_path / ".vol.zarr.partial-abcdef12"  # not a name with a PID (another writer's): kept
    no_pid.mkdir()
    assert run(capsys, "ingest", nifti, "-o", out, "-q")[0] == 0
    assert not dead.exists() and not dead_export.exists()
    assert alive.is_dir() and unrelated.is_dir() and no_pid.is_dir()
    assert remove_stale_staging(tmp_path / "other.zarr") == [unrelated]
