"""Plain image reader on real images (Kodak suite, scikit-image data): layout and exact values."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import rasterio
import tifffile
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning
from skimage import data as skdata

from scorerecon.modalities.io import image
from scorerecon.modalities.io.export import export_store
from scorerecon.modalities.io.store import open_store, sha256_file, store_groups
from scorerecon.pipelines.ingest import detect_reader, ingest

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "natural" / "kodak"
needs_kodak = pytest.mark.skipif(not (KODAK / "kodim01.png").exists(), reason="shared/data/natural/kodak missing")


@needs_kodak
def test_kodak_images_one_group_each_exact():
    files = [KODAK / "kodim01.png", KODAK / "kodim04.png", KODAK / "kodim23.png"]  # kodim04 is portrait
    groups = image.read(files)
    assert list(groups) == ["kodim01", "kodim04", "kodim23"]
    for path, (name, ds) in zip(files, groups.items(), strict=True):
        img = ds["image"]
        assert img.dims == ("band", "y", "x")
        assert list(ds["band"].values) == ["R", "G", "B"]
        assert img.dtype == np.uint8
        assert isinstance(img.data, da.Array)
        assert img.data.chunksize[0] == 1
        expected = np.asarray(Image.open(path)).transpose(2, 0, 1)
        np.testing.assert_array_equal(img.values, expected)
        assert ds.attrs["source_files"][0]["path"] == str(path.resolve()), name
    assert groups["kodim04"]["image"].shape == (3, 768, 512)
    assert groups["kodim01"]["image"].shape == (3, 512, 768)


@needs_kodak
def test_single_image_is_root_group_and_store_round_trip(tmp_path):
    store = ingest([KODAK / "kodim05.png"], tmp_path / "k.zarr")
    assert store_groups(store) == ["/"]
    ds = open_store(store)
    np.testing.assert_array_equal(ds["image"].values,
                                  np.asarray(Image.open(KODAK / "kodim05.png")).transpose(2, 0, 1))
    assert ds.attrs["color"] == "RGB" and ds.attrs["source_format"] == "PNG"


def test_grey_16bit_png_keeps_uint16(tmp_path):
    camera = skdata.camera().astype(np.uint16) * 257 + 3  # real photo spread over 16 bits
    path = tmp_path / "camera16.png"
    Image.fromarray(camera).save(path)
    ds = image.read([path])["/"]
    assert ds["image"].dtype == np.uint16 and list(ds["band"].values) == ["L"]
    np.testing.assert_array_equal(ds["image"].values[0], camera)


def test_colour_16bit_png_keeps_all_16_bits(tmp_path):
    """Pillow would truncate 16-bit RGB to 8 bits; the reader must not."""
    astro = skdata.astronaut().astype(np.uint16) * 257 + np.array([1, 2, 3], dtype=np.uint16)
    path = tmp_path / "astro16.png"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver="PNG", width=astro.shape[1], height=astro.shape[0], count=3,
                           dtype="uint16") as dst:
            dst.write(astro.transpose(2, 0, 1))
    ds = image.read([path])["/"]
    assert ds["image"].dtype == np.uint16 and list(ds["band"].values) == ["R", "G", "B"]
    np.testing.assert_array_equal(ds["image"].values, astro.transpose(2, 0, 1))

    # and back out: the PNG exporter writes 16-bit colour (through GDAL) with its provenance chunk
    store = ingest([path], tmp_path / "astro16.zarr")
    out = export_store(store, "png", tmp_path / "png")
    exported = out / "image.png"
    assert image.read([exported])["/"]["image"].dtype == np.uint16
    np.testing.assert_array_equal(image.read([exported])["/"]["image"].values, astro.transpose(2, 0, 1))
    record = json.loads(Image.open(exported).text["scorerecon"])
    assert record["source_files"][0]["sha256"] == sha256_file(path)
    # no GDAL .aux.xml beside it (only the hidden output marker, modalities/io/outputs.py)
    assert sorted(p.name for p in out.iterdir()) == [".scorerecon-output.json", "image.png"]


def test_palette_png_is_expanded_to_rgb(tmp_path):
    coffee = Image.fromarray(skdata.coffee()).quantize(colors=64)
    path = tmp_path / "coffee_palette.png"
    coffee.save(path)
    ds = image.read([path])["/"]
    assert list(ds["band"].values) == ["R", "G", "B"]
    expected = np.asarray(Image.open(path).convert("RGB")).transpose(2, 0, 1)
    np.testing.assert_array_equal(ds["image"].values, expected)


def test_jpeg_matches_pillow_decode(tmp_path):
    path = tmp_path / "chelsea.jpg"
    Image.fromarray(skdata.chelsea()).save(path, quality=90)
    ds = image.read([path])["/"]
    np.testing.assert_array_equal(ds["image"].values, np.asarray(Image.open(path)).transpose(2, 0, 1))


def test_plain_tiff_is_detected_as_image_and_read_exactly(tmp_path):
    rgb = tmp_path / "astronaut.tif"
    tifffile.imwrite(rgb, skdata.astronaut(), photometric="rgb")
    grey = tmp_path / "camera_float.tif"
    camera = skdata.camera().astype(np.float32) / 255.0
    tifffile.imwrite(grey, camera)
    assert detect_reader([rgb, grey]) == "image"  # TIFF without CRS: a plain image
    groups = image.read([rgb, grey])
    assert list(groups) == ["astronaut", "camera_float"]
    np.testing.assert_array_equal(groups["astronaut"]["image"].values, skdata.astronaut().transpose(2, 0, 1))
    assert groups["camera_float"]["image"].dtype == np.float32
    np.testing.assert_array_equal(groups["camera_float"]["image"].values[0], camera)


def test_same_stem_twice_is_refused(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for sub in ("a", "b"):
        Image.fromarray(skdata.camera()).save(tmp_path / sub / "cam.png")
    with pytest.raises(Exception, match="same group name 'cam'"):
        image.read([tmp_path / "a" / "cam.png", tmp_path / "b" / "cam.png"])
