"""``scorerecon provenance verify`` on outputs of the plain CLI (no Snakemake run, no RO-Crate):
an ingest store, its exports and a reconstruction are checked from the provenance they carry --
sources' and prior's sha256, input stores in turn, every chunk read back."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from scorerecon.modalities.io.store import open_store
from scorerecon.pipelines.cli import main

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = REPO / "checkpoints" / "brain_ddpm"


def _verify(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, list[str]]:
    capsys.readouterr()
    code = main(["provenance", "verify", str(path)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip().splitlines()


@pytest.fixture
def ct_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    """pydicom's CT_small.dcm copied into tmp_path and ingested by the CLI: (source, store)."""
    source = tmp_path / "ct_small.dcm"
    shutil.copyfile(get_testdata_file("CT_small.dcm"), source)
    store = tmp_path / "ct.zarr"
    assert main(["ingest", str(source), "-o", str(store), "-q"]) == 0
    capsys.readouterr()
    return source, store


def test_ingest_store_verifies_and_a_changed_source_is_one_line(ct_store, capsys) -> None:
    source, store = ct_store
    attrs = open_store(store).attrs
    assert attrs["command"].startswith("scorerecon ingest") and attrs["software"]["scorerecon"]
    code, out, err = _verify(store, capsys)
    assert code == 0 and not err
    assert f"ok {attrs['source_files'][0]['sha256'][:16]}" in out and "ct_small.dcm (source)" in out
    assert "ok data" in out and "CRC32C" in out and "command: scorerecon ingest" in out
    assert "from the provenance it carries" in out
    original = source.read_bytes()
    source.write_bytes(original[:-2] + bytes([original[-2] ^ 0xFF]) + original[-1:])  # one pixel byte
    code, out, err = _verify(store, capsys)
    assert code != 0 and len(err) == 1
    assert "ct_small.dcm" in err[0] and "changed since" in err[0] and "Traceback" not in err[0]
    source.write_bytes(original)
    assert _verify(store, capsys)[0] == 0


def test_a_changed_chunk_of_the_store_itself_is_one_line(ct_store, capsys) -> None:
    _, store = ct_store
    chunk = max((p for p in (store / "image").rglob("*") if p.is_file() and p.name != "zarr.json"),
                key=lambda p: p.stat().st_size)
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x01
    chunk.write_bytes(bytes(data))
    code, _, err = _verify(store, capsys)
    assert code != 0 and len(err) == 1 and "ct.zarr" in err[0] and "does not decode" in err[0]


def test_a_missing_source_is_reported_not_failed(ct_store, capsys) -> None:
    source, store = ct_store
    source.rename(source.with_name("moved.dcm"))
    code, out, err = _verify(store, capsys)
    assert code == 0 and not err
    assert "missing" in out and "1 recorded file(s) not found" in out


@pytest.mark.parametrize("fmt,name", [("nifti", "ct.nii.gz"), ("png", "png"), ("dicom", "dcm"),
                                      ("omezarr", "ome.zarr")])
def test_exports_verify_through_their_store(ct_store, capsys, tmp_path: Path, fmt: str, name: str) -> None:
    source, store = ct_store
    out = tmp_path / name
    assert main(["export", str(store), "--format", fmt, "-o", str(out)]) == 0
    code, text, err = _verify(out, capsys)
    assert code == 0 and not err, err
    assert "ct_small.dcm (source)" in text and "ct.zarr (source store" in text and "export --format" in text
    source.write_bytes(source.read_bytes() + b"\0")
    code, _, err = _verify(out, capsys)
    assert code != 0 and len(err) == 1 and "ct_small.dcm" in err[0]


def test_reconstruction_checks_its_prior_and_input_store(tmp_path: Path, capsys) -> None:
    if not (CHECKPOINT / "model.safetensors").is_file():
        pytest.skip("the brain_ddpm prior is not in this checkout")
    prior = tmp_path / "prior"
    prior.mkdir()
    for name in ("model.safetensors", "model_card.json"):
        shutil.copyfile(CHECKPOINT / name, prior / name)
    source = tmp_path / "t1.nii.gz"
    shutil.copyfile(REPO / "data" / "demo" / "colin27_t1.nii.gz", source)
    assert main(["ingest", str(source), "-o", str(tmp_path / "t1.zarr"), "-q"]) == 0
    rec = tmp_path / "rec.zarr"
    assert main(["reconstruct", "--task", "mri", "--input", str(tmp_path / "t1.zarr"), "-o", str(rec),
                 "--checkpoint", str(prior), "--slices", "90", "--crop", "64", "--nfe", "2", "--threads", "1",
                 "--device", "cpu", "--quiet"]) == 0
    code, text, err = _verify(rec, capsys)
    assert code == 0 and not err, err
    assert "model.safetensors (prior weights)" in text and "t1.nii.gz (source)" in text
    assert "t1.zarr (input store" in text and "command: scorerecon reconstruct" in text
    with open(prior / "model.safetensors", "ab") as handle:
        handle.write(b"\0")
    code, _, err = _verify(rec, capsys)
    assert code != 0 and len(err) == 1 and "model.safetensors" in err[0] and "prior weights changed" in err[0]


def test_a_file_without_provenance_is_refused(tmp_path: Path, capsys) -> None:
    stray = tmp_path / "notes.txt"
    stray.write_text("hello\n")
    code, _, err = _verify(stray, capsys)
    assert code != 0 and len(err) == 1 and "carries no scorerecon provenance" in err[0]
