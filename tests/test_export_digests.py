"""Every export carries the sha256 of its own bytes (issue 19): ``OUT.sha256`` beside it, checked by
``scorerecon provenance verify``; one changed byte in an exported file (or sidecar) is one line naming it.

Real exports of real stores made here: a small CT volume ingested from NIfTI (NIfTI, DICOM, PNG,
OME-Zarr) and a georeferenced single-band GeoTIFF ingested and exported as a COG.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from scorerecon.modalities.io.manifest import manifest_path, read_manifest
from scorerecon.pipelines.cli import main

# (format, output name, the file whose byte is flipped, relative to the output's folder)
CASES = [
    ("nifti", "ct.nii.gz", "ct.nii.gz"),
    ("dicom", "dcm", None),  # a slice file, found below
    ("png", "png", "png/image_z0002.png"),
    ("omezarr", "ct.ome.zarr", "ct.ome.zarr/0/c/2/0/0"),
    ("geotiff", "geo.tif", "geo.tif"),
]


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import rasterio
    from rasterio.transform import from_origin

    root = tmp_path_factory.mktemp("digests")
    hu = np.full((4, 32, 32), -1000, np.int16)
    hu[:, 8:24, 8:24] = 40
    nib.save(nib.Nifti1Image(hu.T.copy(), np.diag([1.0, 1.0, 2.0, 1.0])), root / "ct.nii.gz")
    band = np.arange(32 * 32, dtype=np.uint16).reshape(1, 32, 32)
    with rasterio.open(root / "scene.tif", "w", driver="GTiff", width=32, height=32, count=1, dtype="uint16",
                       crs="EPSG:32633", transform=from_origin(500000, 4100000, 30, 30)) as dst:
        dst.write(band)
    for name, source in (("ct", "ct.nii.gz"), ("geo", "scene.tif")):
        assert main(["ingest", str(root / source), "-o", str(root / f"{name}.zarr"), "-q"]) == 0
    return {"ct": root / "ct.zarr", "geo": root / "geo.zarr"}


def _verify(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, list[str]]:
    capsys.readouterr()
    code = main(["provenance", "verify", *extra, str(path)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip().splitlines()


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) * 2 // 3] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(("fmt", "name", "flipped"), CASES, ids=[c[0] for c in CASES])
def test_export_lists_its_bytes_and_verify_catches_a_flipped_byte(stores, tmp_path, capsys, fmt, name,
                                                                  flipped) -> None:
    out = tmp_path / name
    store = stores["geo" if fmt == "geotiff" else "ct"]
    assert main(["export", str(store), "--format", fmt, "-o", str(out)]) == 0
    manifest = manifest_path(out)
    entries = read_manifest(manifest)
    written = sorted(p for p in tmp_path.rglob("*") if p.is_file() and p != manifest)
    assert sorted(tmp_path / rel for _, rel in entries) == written  # every file it wrote, nothing else
    for digest, rel in entries:
        assert hashlib.sha256((tmp_path / rel).read_bytes()).hexdigest() == digest
    check = subprocess.run(["sha256sum", "--check", "--quiet", manifest.name], cwd=tmp_path, capture_output=True,
                           text=True)
    assert check.returncode == 0, check.stdout + check.stderr  # the coreutils format

    for extra in ((), ("--standalone",)):
        code, text, err = _verify(out, capsys, *extra)
        assert code == 0 and not err, err
        assert f"ok {len(entries)} exported file(s) hashed again" in text

    target = tmp_path / flipped if flipped else sorted(out.glob("*.dcm"))[1]
    _flip(target)
    code, text, err = _verify(out, capsys, "--standalone")
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("scorerecon: error: ") and target.name in err[0]
    assert "changed since it was exported" in err[0] and "Traceback" not in text + err[0]


def test_a_changed_sidecar_an_added_file_and_a_lost_file_fail(stores, tmp_path, capsys) -> None:
    nifti = tmp_path / "ct.nii.gz"
    assert main(["export", str(stores["ct"]), "--format", "nifti", "-o", str(nifti)]) == 0
    sidecar = tmp_path / "ct.json"  # the BIDS sidecar written with it
    sidecar.write_text(sidecar.read_text().replace("scorerecon export", "someone else's export"))
    code, _, err = _verify(nifti, capsys)
    assert code == 2 and len(err) == 1 and "ct.json" in err[0] and "changed since it was exported" in err[0]

    png = tmp_path / "png"
    assert main(["export", str(stores["ct"]), "--format", "png", "-o", str(png)]) == 0
    (png / "extra.png").write_bytes((png / "image_z0000.png").read_bytes())
    code, _, err = _verify(png, capsys)
    assert code == 2 and len(err) == 1 and "extra.png" in err[0] and "did not write" in err[0]
    (png / "extra.png").unlink()
    (png / "image_z0001.png").unlink()
    code, _, err = _verify(png, capsys)
    assert code == 2 and len(err) == 1 and "image_z0001.png" in err[0] and "gone" in err[0]


def test_an_export_without_a_manifest_says_its_bytes_are_unchecked(stores, tmp_path, capsys) -> None:
    out = tmp_path / "ct.nii.gz"
    assert main(["export", str(stores["ct"]), "--format", "nifti", "-o", str(out)]) == 0
    manifest_path(out).unlink()  # as written by a scorerecon older than the manifest
    code, text, err = _verify(out, capsys)
    assert code == 0 and not err and "unchecked: no ct.nii.gz.sha256" in text
    manifest_path(out).write_text("not a manifest\n")
    code, _, err = _verify(out, capsys)
    assert code == 2 and len(err) == 1 and "ct.nii.gz.sha256" in err[0] and "line 1" in err[0]


def test_overwrite_replaces_the_manifest_with_the_output(stores, tmp_path) -> None:
    out = tmp_path / "ct.nii.gz"
    assert main(["export", str(stores["ct"]), "--format", "nifti", "-o", str(out)]) == 0
    assert main(["export", str(stores["ct"]), "--format", "nifti", "-o", str(out)]) == 2  # exists
    first = manifest_path(out).read_text()
    out.write_bytes(b"changed")
    assert main(["export", str(stores["ct"]), "--format", "nifti", "-o", str(out), "--overwrite"]) == 0
    assert manifest_path(out).read_text() == first  # the same bytes written again, and listed again
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]
