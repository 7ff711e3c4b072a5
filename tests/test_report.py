"""``scorerecon report`` on a small real run: self-contained, complete, and it renders in a browser.

The run is built from the real demo data (the Kodak PNG, the colin27 brain NIfTI and the twix
phantom k-space, ingested through the project's readers), a real CT evaluation with its pictures
(``evaluate --images``), a real CT reconstruction exported to NIfTI and DICOM, plus a sample grid,
Snakemake benchmark files and evaluation results in the documented formats. The page is opened in headless Chromium
and its screenshot must show something (not a blank or error page). Outside CI the browser test
is skipped when Chromium is not installed; in CI (``CI=true``) it must run.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scorerecon.pipelines.cli import main
from scorerecon.pipelines.ingest import ingest
from scorerecon.pipelines.report import read_benchmarks

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "data" / "demo"
HEAD_CT = REPO / "checkpoints" / "head_ct_ddpm"
SCORERECON = [sys.executable, "-m", "scorerecon.pipelines.cli"]
BENCH_HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
EVAL = {
    "task": "mri_cartesian_r4",
    "convention": "magnitude; PSNR with data range = max of reference; SSIM per slice 7x7",
    "params": {"acceleration": 4, "centre_fraction": 0.08, "mask": "random1d"},
    "methods": {
        "zero_filled": {"family": "classical", "psnr": 27.125, "ssim": 0.7134, "nmse": 0.0412, "nfe": 0,
                        "seconds": 0.004},
        "dds_cg": {"family": "diffusion", "psnr": 33.875, "ssim": 0.9021, "nmse": 0.0071, "nfe": 49,
                   "seconds": 12.5},
    },
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workflow output directory as the workflow lays it out, from real demo data."""
    out = tmp_path_factory.mktemp("run") / "results" / "demo"
    stores = out / "stores"
    ingest([DEMO / "kodim23.png"], stores / "kodak.zarr")
    ingest([DEMO / "colin27_t1.nii.gz"], stores / "brain_mri.zarr")
    ingest([DEMO / "twix_gre_phantom_2coil.dat"], stores / "phantom_kspace.zarr")
    # a sample grid as `scorerecon sample` writes it: a PNG
    (out / "samples").mkdir()
    grid = (np.indices((128, 256)).sum(axis=0) % 64 * 4).astype(np.uint8)
    Image.fromarray(grid).save(out / "samples" / "brain_ddpm.png")
    # Snakemake benchmark files (one with two repeats, one too short to sample memory: NA)
    (out / "benchmarks" / "ingest").mkdir(parents=True)
    (out / "benchmarks" / "ingest" / "kodak.tsv").write_text(
        BENCH_HEADER + "1.50\t0:00:01\t150.5\t900\t100\t110\t0.1\t3.2\t50\t0.90\n"
        "2.50\t0:00:02\t170.5\t900\t100\t110\t0.1\t3.2\t50\t1.10\n")
    (out / "benchmarks" / "report.tsv").write_text(BENCH_HEADER + "0.30\t0:00:00\tNA\tNA\tNA\tNA\tNA\tNA\tNA\t0\n")
    (out / "eval").mkdir()
    (out / "eval" / "mri_cartesian_r4.json").write_text(json.dumps(EVAL))
    (out / "eval" / "broken.json").write_text("{not json")
    (out / "hardware.json").write_text(json.dumps({"cpu": "Test CPU", "cores": 2, "device": "cpu",
                                                   "slurm": {"SLURM_JOB_ID": "42"}}))
    # a real CT evaluation with its pictures, and a real reconstruction exported as the workflow does
    # (the input store lies outside the run, so it is no store panel of its own)
    head = ingest([DEMO / "head_ct_hu.nii.gz"], out.parent / "inputs" / "head_ct.zarr")
    tiny = ["--nfe", "2", "--seed", "0", "--views", "20", "--threads", "1", "--quiet", "--checkpoint", str(HEAD_CT)]
    assert main(["evaluate", "--task", "ct", "--input", str(head), "--slices", "52,54", "--crop", "32",
                 "--solvers", "dds", "--samples", "2", "--json", str(out / "eval" / "ct.json"),
                 "--images", str(out / "eval" / "ct.npz"), *tiny]) == 0
    recon = out / "recon" / "ct.zarr"
    assert main(["reconstruct", "--task", "ct", "--input", str(head), "--slices", "53,54", "--crop", "40",
                 "--samples", "2", "-o", str(recon), *tiny]) == 0
    (out / "exports" / "brain_mri" / "nifti").mkdir(parents=True)  # an ingested store's export, as the workflow lays it
    assert main(["export", str(stores / "brain_mri.zarr"), "--format", "nifti", "-o",
                 str(out / "exports" / "brain_mri" / "nifti" / "brain_mri.nii.gz")]) == 0
    exports = out / "recon" / "exports" / "ct"
    for fmt, name in (("nifti", "ct.nii.gz"), ("dicom", "ct_dicom")):
        (exports / fmt).mkdir(parents=True)
        assert main(["export", str(recon), "--format", fmt, "-o", str(exports / fmt / name)]) == 0
    return out


@pytest.fixture(scope="module")
def report(run_dir: Path) -> Path:
    """The report, made by the real command line."""
    output = run_dir / "report.html"
    result = subprocess.run([*SCORERECON, "report", "--outdir", str(run_dir), "-o", str(output)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return output


def _images(html_text: str) -> list[Image.Image]:
    found = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html_text)
    return [Image.open(io.BytesIO(base64.b64decode(data))) for data in found]


def _panel(html_text: str, store: str) -> str:
    start = html_text.index(f'id="store-{store}"')
    end = html_text.find('<div class="panel"', start)
    return html_text[start:end if end > 0 else None]


def test_report_is_one_self_contained_file(report: Path) -> None:
    text = report.read_text()
    assert text.startswith("<!DOCTYPE html>")
    # nothing is fetched when the page opens: no external URLs, scripts or stylesheets
    assert not re.search(r'(src|href)\s*=\s*"(?!data:|#)', text), "a resource outside the page"
    assert "url(" not in text and "<script" not in text and "<link" not in text
    images = _images(text)
    # 3 store previews + the sample grid + the CT evaluation's pictures + the reconstruction + the timing chart
    assert len(images) == 7
    assert all(img.format == "PNG" and img.width > 100 and img.height > 100 for img in images)
    assert len(re.findall(r"<img ", text)) == len(images)


def test_report_has_every_section_with_the_real_values(report: Path, run_dir: Path) -> None:
    text = report.read_text()
    for store in ("kodak.zarr", "brain_mri.zarr", "phantom_kspace.zarr"):
        assert store in text
    brain = _panel(text, "brain_mri")
    assert "181 × 217 × 181" in brain and "uint8" in brain
    assert "-125.00" in brain and "RAS" in brain  # the affine's y offset and the orientation
    assert "brain_mri.nii.gz" in brain and "181 × 217 × 181 voxels of 1 × 1 × 1 mm, orientation RAS" in brain
    assert "colin27_t1.nii.gz" in brain and "a009051127f64dc3" in brain  # source and its sha256
    kspace = _panel(text, "phantom_kspace")
    assert "complex64" in kspace and "coil, z, ky, kx" in kspace
    # evaluation: a table for the task, both families, metrics as given; the broken file is named
    assert "mri_cartesian_r4" in text and EVAL["convention"] in text
    for method in ("zero_filled", "dds_cg"):
        assert f"<td>{method}</td>" in text
    assert "33.88" in text and "0.9021" in text and "<td>diffusion</td>" in text
    assert "broken.json" in text and "unreadable" in text
    # timings: repeats averaged (2.0 s), peak RSS is the max (170.5 MB), NA left empty
    assert "<td>ingest</td><td>kodak</td>" in text
    assert '<td class="num">2.00</td>' in text or '<td class="num">2</td>' in text
    assert "170.5" in text
    assert "SLURM_JOB_ID" in text and "Test CPU" in text
    assert "brain_ddpm" in text


def test_previews_show_the_data(report: Path) -> None:
    text = report.read_text()
    kodak = np.asarray(_images(_panel(text, "kodak"))[0].convert("RGB")).astype(int)
    brain = np.asarray(_images(_panel(text, "brain_mri"))[0].convert("RGB")).astype(int)
    phantom = np.asarray(_images(_panel(text, "phantom_kspace"))[0].convert("L")).astype(float)
    # the photo keeps its colours (strongly saturated parrots), the MRI is grey and not empty
    saturation = kodak.max(axis=2) - kodak.min(axis=2)
    assert np.mean(saturation > 80) > 0.05
    assert np.array_equal(brain[..., 0], brain[..., 1]) and np.array_equal(brain[..., 1], brain[..., 2])
    assert brain.std() > 30
    # the k-space panel holds a reconstructed image and the k-space: both with structure
    assert phantom.std() > 30


def test_benchmarks_are_parsed_as_snakemake_writes_them(run_dir: Path) -> None:
    rows = {(r["step"], r["target"]): r for r in read_benchmarks(run_dir)}
    kodak = rows[("ingest", "ingest/kodak")]
    assert kodak["seconds"] == pytest.approx(2.0) and kodak["max_rss_mb"] == pytest.approx(170.5)
    assert kodak["cpu_seconds"] == pytest.approx(1.0)
    own = rows[("report", "")]
    assert own["seconds"] == pytest.approx(0.3) and own["max_rss_mb"] is None


def test_report_of_an_empty_run_and_of_a_missing_directory(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = subprocess.run([*SCORERECON, "report", "--outdir", str(empty), "-o", str(empty / "r.html")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Nothing to report yet" in (empty / "r.html").read_text()
    result = subprocess.run([*SCORERECON, "report", "--outdir", str(tmp_path / "nope"), "-o",
                             str(tmp_path / "r.html")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "does not exist" in result.stderr
    assert not (tmp_path / "r.html").exists()


def test_hardware_description(tmp_path: Path) -> None:
    output = tmp_path / "hardware.json"
    result = subprocess.run([*SCORERECON, "report", "--hardware", "-o", str(output)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    info = json.loads(output.read_text())
    assert info["cores"] == os.cpu_count() and info["torch"] and info["device"] in ("cpu", "cuda")
    assert isinstance(info["slurm"], dict) and isinstance(info["cuda_available"], bool)


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def test_report_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is not installed but CI=true: .ci/run should have installed it")
        pytest.skip("Chromium not installed (apt-get install -y chromium); CI installs it and runs this test")
    shot = tmp_path / "report.png"
    result = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,2000",
         report.resolve().as_uri()],
        capture_output=True, text=True, timeout=120)
    assert shot.is_file(), f"no screenshot (rc {result.returncode}):\n{result.stderr[-2000:]}"
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (2000, 1200)
    assert pixels.std() > 25, "the page rendered (nearly) blank"
    colours = np.unique(pixels.reshape(-1, 3)[::7], axis=0)
    assert len(colours) > 500, f"only {len(colours)} distinct colours: images did not render"
    # the header's colour (#1f3b5a) proves the page's own styling rendered, not an error page
    assert np.abs(pixels[8, 8].astype(int) - [0x1F, 0x3B, 0x5A]).max() <= 6


def test_only_this_runs_outputs_are_reported(run_dir: Path) -> None:
    """Stores and evaluations an earlier config left in the folder are not shown as this run's."""
    from scorerecon.pipelines.report import build_report

    html_text = build_report(run_dir, only=[run_dir / "stores" / "kodak.zarr",
                                            run_dir / "eval" / "mri_cartesian_r4.json"])
    assert 'id="store-kodak"' in html_text
    assert 'id="store-brain_mri"' not in html_text and 'id="store-phantom_kspace"' not in html_text
    assert "mri_cartesian_r4" in html_text and "broken.json" not in html_text
    assert "Samples from the priors" not in html_text


def _section(html_text: str, anchor: str) -> str:
    start = html_text.index(f'id="{anchor}"')
    end = html_text.find('<div class="panel"', start + 1)
    return html_text[start:end if end > 0 else None]


def test_evaluation_pictures_beside_the_table(report: Path) -> None:
    """The CT evaluation shows its measurement, input, methods, reference, |error| and std in one figure."""
    text = report.read_text()
    panel = _section(text, "eval-ct")
    assert "held-out slices of a training source" in panel  # the data label, in the header and the caption
    caption = re.search(r'<figure class="pictures">.*?<figcaption>(.*?)</figcaption>', panel, re.S).group(1)
    assert "z = 54" in caption and "HU window [-160, 240]" in caption and "|error| maps share one scale" in caption
    assert "posterior std" in caption and "ct.npz" in caption
    picture = np.asarray(_images(panel)[0].convert("RGB")).astype(int)
    # three rows (pictures, |error|, std): taller than a row of five cells is wide / 2; colour maps present
    assert picture.shape[0] > picture.shape[1] / 2
    spread = picture.max(axis=2) - picture.min(axis=2)
    assert np.mean(spread > 60) > 0.02  # inferno / viridis pixels, not only grey
    assert panel.index("<figure") < panel.index("<table>")  # the pictures come with the table


def test_reconstruction_with_its_exports_and_their_geometry(report: Path) -> None:
    text = report.read_text()
    panel = _section(text, "recon-ct")
    caption = re.search(r"<figcaption>(.*?)</figcaption>", panel, re.S).group(1)
    assert "z = 54 of the input" in caption and "simulated from the input" in caption
    # both exports listed, read back with their geometry: 40x40 pixels of 0.957 mm, 2 slices of 1.5 mm
    assert "ct.nii.gz" in panel and "40 × 40 × 2 voxels of 0.957 × 0.957 × 1.5 mm" in panel
    assert "orientation RAS" in panel
    assert "DICOM CT, DERIVED" in panel and "40 × 40 × 2 slices, pixel 0.957 × 0.957 mm" in panel
    picture = np.asarray(_images(panel)[0].convert("L")).astype(float)
    assert picture.std() > 20


def test_reconstruction_is_compared_with_its_own_input_slice(run_dir: Path) -> None:
    """The input picture is the input store's slice on the reconstruction's grid (the crop found from the affines)."""
    from scorerecon.modalities.io.store import open_store
    from scorerecon.pipelines.evaluate import prepare_slices
    from scorerecon.pipelines.report import reconstruction_panels

    panels = reconstruction_panels(run_dir / "recon" / "ct.zarr")
    assert [(it.name, it.role) for it in panels.items] == [("input", "reference"), ("reconstruction", "diffusion")]
    head = open_store(run_dir.parent / "inputs" / "head_ct.zarr")["image"]
    expected = prepare_slices(head.isel(z=[54]).values, 40, square=True)[0]
    np.testing.assert_array_equal(panels.items[0].image, expected)
    recon = panels.items[1]
    assert recon.std is not None and recon.error is not None and recon.image.shape == (40, 40)


def test_reconstructions_follow_only(run_dir: Path) -> None:
    from scorerecon.pipelines.report import build_report

    assert 'id="recon-ct"' not in build_report(run_dir, only=[run_dir / "eval" / "ct.json"])
    assert 'id="recon-ct"' in build_report(run_dir, only=[run_dir / "recon" / "ct.zarr"])
