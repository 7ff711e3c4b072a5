"""k-space acquired undersampled without a fully sampled centre (BART's in-vivo layout): the sampling
mask read off the data, coil maps calibrated from what was measured (JSENSE), and the whole path
``ingest x.cfl`` -> ``reconstruct --task mri`` on 8 coils simulated from a real brain slice.

The BART in-vivo example itself (``1 180 230 8``, ~12.7 % of samples) ships in no package this
project can install (Debian ``bart`` 0.8 and ``bart-view`` carry no data; PyPI has no BART data
package), so the file is rebuilt with its layout from the real Colin27 T1: 8 birdcage coils,
variable-density Poisson sampling with no calibration box, readout dimension singleton.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import sigpy.mri
import torch

from scorerecon.modalities.mri.coils import jsense_maps, normalize_maps, simulate_multicoil_kspace
from scorerecon.modalities.mri.masks import central_density, sampling_mask
from scorerecon.modalities.mri.operators import ifft2c
from scorerecon.pipelines.tasks.mri import acs_size, calibrate_coils

COLIN = Path(__file__).resolve().parents[1] / "data" / "demo" / "colin27_t1.nii.gz"


@pytest.fixture(scope="module")
def brain() -> dict:
    """Axial Colin27 slice as a 230 x 180 (ky = PHS2, kx = PHS1) plane, 8 coils, ~12.5 % Poisson samples."""
    if not COLIN.exists():
        pytest.skip(f"demo data not available: {COLIN}")
    sl = np.asarray(nib.load(COLIN).dataobj[:, :, 90], dtype=np.float32).T[:, :180]
    img = np.pad(sl, ((6, 7), (0, 0))) / 255.0
    sim = simulate_multicoil_kspace(img, n_coils=8, noise_std=1e-4, seed=0)
    mask = sigpy.mri.poisson(img.shape, 8.0, calib=(0, 0), seed=0, crop_corner=True, dtype=np.float32).real
    mask = torch.from_numpy(mask.copy())
    return {"image": img, "sim": sim, "mask": mask, "kspace": sim.kspace * mask}


def test_sampling_mask_is_read_off_the_data(brain: dict) -> None:
    found = sampling_mask(brain["kspace"][None])  # (S, C, H, W): any coil, any slice
    assert torch.equal(found, brain["mask"])
    assert 0.10 < float(found.mean()) < 0.15
    assert min(acs_size(found)) < 8  # no fully sampled centre: ESPIRiT's usual input is missing
    assert 0.5 < central_density(found, 32) < 1.0  # but the centre is densely sampled
    assert central_density(torch.ones(4, 6), 100) == 1.0


def test_jsense_maps_from_measured_samples_only(brain: dict) -> None:
    maps, phase = jsense_maps(brain["kspace"], calib_width=32)
    assert maps.shape == brain["sim"].sens_maps.shape and torch.isfinite(maps).all()
    head = torch.from_numpy(brain["image"] > 0.1)
    agreement = (normalize_maps(maps).conj() * brain["sim"].sens_maps).sum(0).abs()
    assert float(agreement[head].mean()) > 0.95  # measured 0.998
    # the folded phase makes the fully sampled SENSE image nearly real (the object's phase is in the maps)
    folded = maps * torch.exp(1j * phase)
    x = (folded.conj() * ifft2c(brain["sim"].kspace)).sum(0)[head]
    plain = (maps.conj() * ifft2c(brain["sim"].kspace)).sum(0)[head]
    assert float(x.imag.norm() / x.abs().norm()) < 0.5 * float(plain.imag.norm() / plain.abs().norm())
    assert float((x.real > 0).float().mean()) > 0.99


def test_calibrate_coils_picks_espirit_or_jsense(brain: dict) -> None:
    maps, record = calibrate_coils(brain["kspace"][None], brain["mask"])
    assert record["method"].startswith("JSENSE") and record["phase_in_maps"] and maps.shape == (1, 8, 230, 180)
    full = torch.zeros_like(brain["mask"])
    full[115 - 12:115 + 12] = 1  # a 24-line fully sampled band: ESPIRiT
    _, record = calibrate_coils((brain["sim"].kspace * full)[None], full)
    assert record["method"].startswith("ESPIRiT") and not record["phase_in_maps"]
    sparse = torch.zeros_like(brain["mask"])
    sparse[::5, ::5] = 1  # 4 % of the centre, no block: refused, not guessed
    with pytest.raises(ValueError, match="too little to calibrate"):
        calibrate_coils((brain["sim"].kspace * sparse)[None], sparse)


def test_bart_invivo_layout_ingests_and_reconstructs(brain: dict, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from scorerecon.modalities.io.store import open_store
    from scorerecon.pipelines.cli import main

    base = tmp_path / "invivo"
    arr = brain["kspace"].numpy().astype(np.complex64).transpose(2, 1, 0)[None]  # READ 1, PHS1 180, PHS2 230, COIL 8
    base.with_suffix(".hdr").write_text("# Dimensions\n" + " ".join(map(str, arr.shape + (1,) * 12)) + "\n")
    np.asfortranarray(arr).T.tofile(base.with_suffix(".cfl"))
    assert main(["ingest", str(base.with_suffix(".cfl")), "-o", str(tmp_path / "k.zarr"), "-q"]) == 0
    assert open_store(tmp_path / "k.zarr")["kspace"].shape == (8, 1, 230, 180)
    assert main(["reconstruct", "--task", "mri", "--input", str(tmp_path / "k.zarr"), "-o", str(tmp_path / "r.zarr"),
                 "--nfe", "5", "--device", "cpu", "--threads", "1", "--quiet"]) == 0
    capsys.readouterr()
    out = open_store(tmp_path / "r.zarr")
    record = out.attrs["reconstruction"]
    assert record["mask"]["kind"].startswith("as acquired")
    assert record["mask"]["realised_acceleration"] == pytest.approx(1 / float(brain["mask"].mean()), rel=1e-3)
    assert record["sens_maps"]["method"].startswith("JSENSE") and record["sens_maps"]["phase_in_maps"]
    image = out["image"].values[0]
    assert image.shape == (230, 180) and np.isfinite(image).all()
    truth = brain["image"]
    zero_filled = ifft2c(brain["kspace"]).abs().pow(2).sum(0).sqrt().numpy()

    def nrmse(a: np.ndarray) -> float:  # after the least-squares intensity scale (MR has no absolute unit)
        a = a * (truth * a).sum() / (a * a).sum()
        return float(np.linalg.norm(a - truth) / np.linalg.norm(truth))

    assert nrmse(image) < 0.6 * nrmse(zero_filled)  # measured 0.19 vs 0.53 (nfe 5)
