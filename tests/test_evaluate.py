"""``scorerecon evaluate`` and ``scorerecon reconstruct`` end to end on real demo data (tiny settings).

evaluate: the JSON follows DESIGN.md section 3 and holds both families; training slices are
refused by content (source sha256, pixel fingerprint), any other data is evaluated and
labelled. reconstruct: a store with the reconstruction (+ std for several samples) and its
provenance; bad inputs give one line on stderr, exit 2, and leave no output behind.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scorerecon.modalities.io.store import open_store
from scorerecon.pipelines.cli import main

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "data" / "demo"
BRAIN, HEAD = REPO / "checkpoints" / "brain_ddpm", REPO / "checkpoints" / "head_ct_ddpm"


def _need(*ckpts: Path) -> None:
    for c in ckpts:
        if not (c / "model_card.json").is_file():
            pytest.skip(f"{c.name} checkpoint not present")


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("stores")
    out = {}
    sources = (("brain", "colin27_t1.nii.gz"), ("ct", "head_ct_hu.nii.gz"), ("twix", "twix_gre_phantom_2coil.dat"))
    for name, src in sources:
        out[name] = root / f"{name}.zarr"
        assert main(["ingest", str(DEMO / src), "-o", str(out[name]), "--quiet"]) == 0
    return out


def _check_schema(result: dict, task: str) -> None:
    assert set(result) >= {"task", "convention", "params", "slices", "methods"}
    assert result["slices"] == result["params"]["slices"]
    assert result["task"] == task and isinstance(result["convention"], str) and result["convention"]
    assert {m["family"] for m in result["methods"].values()} == {"classical", "diffusion"}
    for name, m in result["methods"].items():
        assert set(m) >= {"family", "psnr", "ssim", "nmse", "nfe", "seconds"}, name
        assert all(isinstance(m[k], (int, float)) for k in ("psnr", "ssim", "nmse", "nfe", "seconds"))
        assert (m["nfe"] > 0) == (m["family"] == "diffusion")


def test_evaluate_mri_writes_the_design_schema(stores, tmp_path, capsys) -> None:
    _need(BRAIN)
    out = tmp_path / "mri.json"
    rc = main(["evaluate", "--task", "mri", "--input", str(stores["brain"]), "--slices", "85", "--accel", "4",
               "--mask", "random", "--nfe", "4", "--seed", "0", "--crop", "48", "--solvers", "dds,dc",
               "--baselines", "zero_filled,tv", "--json", str(out), "--quiet"])
    assert rc == 0
    result = json.loads(out.read_text())
    _check_schema(result, "mri")
    assert set(result["methods"]) == {"zero_filled", "tv", "dds", "dc"}
    assert result["params"]["mask"]["center_fraction"] == pytest.approx(0.08)
    assert "| dds" in capsys.readouterr().out


def test_evaluate_ct_sparse_view(stores, tmp_path) -> None:
    _need(HEAD)
    out = tmp_path / "ct.json"
    rc = main(["evaluate", "--task", "ct", "--input", str(stores["ct"]), "--slices", "50", "--views", "20",
               "--nfe", "4", "--downsample", "4", "--solvers", "dds", "--baselines", "fbp",
               "--json", str(out), "--quiet"])
    assert rc == 0
    result = json.loads(out.read_text())
    _check_schema(result, "ct")
    assert result["params"]["geometry"]["n_angles"] == 20


def test_evaluate_refuses_training_slices(stores, tmp_path, capsys) -> None:
    _need(BRAIN)
    out = tmp_path / "x.json"
    rc = main(["evaluate", "--task", "mri", "--input", str(stores["brain"]), "--slices", "60", "--json", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "train" in err
    assert not out.exists()


def test_reconstruct_mri_twix_writes_store_with_provenance_and_std(stores, tmp_path) -> None:
    _need(BRAIN)
    out = tmp_path / "recon.zarr"
    rc = main(["reconstruct", "--task", "mri", "--input", str(stores["twix"]), "-o", str(out), "--solver", "dds",
               "--nfe", "3", "--samples", "2", "--accel", "4", "--mask", "random", "--quiet"])
    assert rc == 0
    ds = open_store(out)
    assert ds["image"].dims == ("z", "y", "x") and ds["std"].shape == ds["image"].shape
    img, std = ds["image"].values, ds["std"].values
    assert img.shape[-2:] == (160, 160)  # readout oversampling removed
    assert (img == img).all() and (std == std).all() and std.max() > 0
    rec = ds.attrs["reconstruction"]
    default_prior = REPO / "checkpoints" / "brain_mr_ddpm"  # the registry's MRI default
    assert ds.attrs["checkpoint_sha256"] == json.loads((default_prior / "model_card.json").read_text())["weights"][
        "sha256"]
    assert rec["solver"] == "dds" and rec["nfe"] == 3 and rec["seed"] == 0 and rec["samples"] == 2
    noise = rec["complex_handling"]["noise"]  # measured k-space: DDS weighs the data by its measured noise
    assert noise["kspace_std_model"] > 0 and noise["dds_lam"] == rec["solver_settings"]["lam"] > 1e-2
    assert rec["mask"]["kind"] == "random" and rec["mask"]["lines_along"] == "rows (ky)"
    assert rec["sens_maps"]["method"].startswith("ESPIRiT")
    assert ds.attrs["source_files"][0]["sha256"]


def test_reconstruct_ct_volume_with_tv_z(stores, tmp_path) -> None:
    _need(HEAD)
    out = tmp_path / "ct.zarr"
    rc = main(["reconstruct", "--task", "ct", "--input", str(stores["ct"]), "-o", str(out), "--slices", "50,51",
               "--views", "20", "--downsample", "4", "--nfe", "3", "--tv-z", "0.02", "--quiet"])
    assert rc == 0
    ds = open_store(out)
    assert ds["image"].shape == (2, 64, 64) and list(ds["source_slice"].values) == [50, 51]
    assert ds.attrs["reconstruction"]["volume_mode"].startswith("2d prior + TV-z")
    assert ds.attrs["reconstruction"]["geometry"]["n_angles"] == 20


@pytest.mark.parametrize("case", ["wrong_store_kind", "missing_checkpoint", "bad_accel", "ct_without_geometry"])
def test_reconstruct_bad_inputs_give_one_line_and_no_output(stores, tmp_path, capsys, case) -> None:
    _need(BRAIN, HEAD)
    out = tmp_path / "out.zarr"
    args = {
        "wrong_store_kind": ["--task", "ct", "--input", str(stores["twix"])],
        "missing_checkpoint": ["--task", "mri", "--input", str(stores["twix"]), "--checkpoint", str(tmp_path / "nope")],
        "bad_accel": ["--task", "mri", "--input", str(stores["twix"]), "--accel", "0.5"],
        "ct_without_geometry": ["--task", "ct", "--input", str(stores["ct"])],
    }[case]
    rc = main(["reconstruct", *args, "-o", str(out), "--nfe", "2"])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("scorerecon: error:")
    assert not out.exists() and not list(tmp_path.glob(".out.zarr.partial-*"))


def test_markdown_table_ranks_by_the_primary_metric() -> None:
    """Columns follow the metrics the methods report; lower-is-better metrics rank the right way."""
    from scorerecon.pipelines.evaluate import markdown_table

    result = {"methods": {
        "brovey": {"family": "classical", "ergas": 3.1, "sam": 2.0, "nfe": 0, "seconds": 0.1},
        "gsa": {"family": "classical", "ergas": 2.4, "sam": 2.2, "nfe": 0, "seconds": 0.1},
        "residual_diffusion": {"family": "diffusion", "ergas": 2.0, "sam": 1.8, "nfe": 10, "seconds": 3.0}}}
    table = markdown_table(result, primary="ergas").splitlines()
    assert table[0] == "| method | family | ergas | sam | NFE | seconds |"
    marked = [line.split("|")[1].strip() for line in table[2:] if " *" in line]
    assert marked == ["gsa *", "residual_diffusion *"]


def test_evaluate_mri_multicoil_simulation(stores, tmp_path, capsys) -> None:
    """--coils N simulates N-coil k-space from the real slice; too few ACS lines for ESPIRiT is one clear line."""
    _need(BRAIN)
    out = tmp_path / "mri8.json"
    rc = main(["evaluate", "--task", "mri", "--input", str(stores["brain"]), "--slices", "85", "--coils", "4",
               "--nfe", "4", "--crop", "48", "--solvers", "dds", "--baselines", "zero_filled,l1_wavelet",
               "--json", str(out), "--quiet"])
    assert rc == 0
    result = json.loads(out.read_text())
    _check_schema(result, "mri")
    assert result["params"]["coils"] == 4 and result["params"]["coil_simulation"]["coils"] == 4
    # the SENSE-combined zero-filled image with the true maps recovers the magnitude's scale
    assert 0.0 < result["methods"]["zero_filled"]["nmse"] < 0.5
    assert result["methods"]["l1_wavelet"]["psnr"] > result["methods"]["zero_filled"]["psnr"]
    capsys.readouterr()
    rc = main(["evaluate", "--task", "mri", "--input", str(stores["brain"]), "--slices", "85", "--coils", "4",
               "--coil-maps", "espirit", "--nfe", "4", "--crop", "48", "--solvers", "dds", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "ESPIRiT" in err and err.strip().count("\n") == 0


def test_mri_posterior_mean_variant_counts_every_sample(stores, tmp_path) -> None:
    """A ``*_mean<N>`` variant averages N posterior samples and reports N x NFE."""
    from scorerecon.pipelines.evaluate import evaluate, mean_variants

    _need(BRAIN)
    result = evaluate("mri", stores["brain"], [85], nfe=3, seed=0, solvers=["dds"], baselines=["zero_filled"],
                      crop=48, variants=mean_variants(2, ("dds",)))
    single, mean = result["methods"]["dds"], result["methods"]["dds_mean2"]
    assert single["nfe"] == 3 and single["samples"] == 1
    assert mean["nfe"] == 6 and mean["samples"] == 2 and mean["psnr"] != single["psnr"]
    assert result["params"]["solver_settings"]["dds_mean2"]["samples"] == 2


def test_ct_volume_variant_couples_the_slices_along_z(stores) -> None:
    """A ``tv_z`` variant reconstructs consecutive slices as one volume (2-D prior + TV along z;
    that it is smoother along z is tests/test_tasks_ct.py's): a different result from the same
    solver slice by slice that still fits the sinograms, recorded in the params."""
    from scorerecon.pipelines.evaluate import evaluate

    _need(HEAD)
    result = evaluate("ct", stores["ct"], [50, 51, 52, 53], views=23, nfe=4, seed=0, solvers=["dds"],
                      baselines=["fbp"], crop=48, downsample=2,
                      variants={"dds_tvz": {"solver": "dds", "tv_z": 0.05}})
    flat, coupled = result["methods"]["dds"], result["methods"]["dds_tvz"]
    assert coupled["nfe"] == flat["nfe"] == 4 and coupled["psnr"] != flat["psnr"]
    assert result["params"]["solver_settings"]["dds_tvz"]["tv_z"] == 0.05
    assert coupled["relative_data_residual"] < 0.05  # the volume step still fits the sinograms


def test_evaluate_certifies_the_data_by_content(stores, tmp_path) -> None:
    """Held-out slices of the training volume: evaluated, labelled as such; the training volume
    re-saved under another name and dtype (another sha256, same pixels): its training slices
    are still refused (pixel fingerprint) and its held-out ones accepted; another subject's
    volume: evaluated as unseen data (and, at 2 mm against the prior's 1 mm, on the prior's grid)."""
    import nibabel as nib
    import numpy as np

    from scorerecon.pipelines.errors import InputError
    from scorerecon.pipelines.evaluate import evaluate, markdown_table
    from scorerecon.pipelines.holdout import HELD_OUT, UNSEEN

    _need(BRAIN)
    tiny = {"nfe": 2, "seed": 0, "solvers": ["dc"], "baselines": ["zero_filled"]}
    held = evaluate("mri", stores["brain"], [85], crop=48, **tiny)
    assert held["data"] == held["params"]["data"] == HELD_OUT
    assert held["params"]["holdout"]["same_source_sha256"]  # recognised by the source's sha256
    assert markdown_table(held).startswith("Data: held-out slices of a training source")

    colin = nib.load(DEMO / "colin27_t1.nii.gz")
    copy = tmp_path / "renamed_float.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(colin.dataobj, dtype=np.float32), colin.affine), copy)
    resaved = tmp_path / "resaved.zarr"
    assert main(["ingest", str(copy), "-o", str(resaved), "--quiet"]) == 0
    with pytest.raises(InputError, match=r"slices \[60\] were used to train"):
        evaluate("mri", resaved, [60], crop=48, **tiny)
    again = evaluate("mri", resaved, [90], crop=48, **tiny)
    assert again["data"] == HELD_OUT and not again["params"]["holdout"]["same_source_sha256"]

    other = tmp_path / "anatomical.zarr"
    anat = Path(nib.__file__).parent / "tests" / "data" / "anatomical.nii"  # a real 2 mm T1 of another subject
    assert main(["ingest", str(anat), "-o", str(other), "--quiet"]) == 0
    unseen = evaluate("mri", other, [12], **tiny)
    assert unseen["data"] == UNSEEN
    grid = unseen["params"]["grid"]
    assert grid["resampled"] and grid["input_pixel_mm"] == [2.0, 2.0]
    assert grid["shape"] == [2 * n for n in grid["input_shape"]]  # 2 mm -> the prior's 1 mm, same FOV
    assert np.isfinite(unseen["methods"]["dc"]["psnr"])


def test_reconstruct_warm_start_on_the_priors_grid(stores, tmp_path) -> None:
    """reconstruct --warm-start fbp --t0: the solver starts from FBP diffused to t0; a 4x4-averaged
    (3.8 mm) slice is reconstructed on the prior's 0.96 mm grid and comes back at 3.8 mm; both recorded."""
    _need(HEAD)
    out = tmp_path / "warm.zarr"
    rc = main(["reconstruct", "--task", "ct", "--input", str(stores["ct"]), "-o", str(out), "--slices", "50",
               "--views", "20", "--downsample", "4", "--nfe", "3", "--warm-start", "fbp", "--t0", "0.3", "--quiet"])
    assert rc == 0
    ds = open_store(out)
    rec = ds.attrs["reconstruction"]
    assert ds["image"].shape == (1, 64, 64) and rec["nfe"] == 3
    assert rec["warm_start"] == {"from": "fbp", "t0": 0.3}
    assert rec["grid"]["resampled"] and rec["grid"]["shape"] == [256, 256]
