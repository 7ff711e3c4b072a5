"""The prepared GPU check stays runnable: ``benchmarks/gpu_engine.py --dry-run`` end to end on the CPU.

The check drives the user-facing code paths (``scorerecon reconstruct`` for MRI and CT,
``pansharpen_scene``, the natural-image solver, ``scorerecon evaluate`` twice), so a change to any
of them that would break it on the GPU machine -- where nobody can debug it cheaply -- fails here
first. Toy sizes: the numbers mean nothing and are not asserted; the steps and the report are.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NEEDED = ("brain_ddpm", "head_ct_ddpm", "landsat8_pansharpen", "photos_prior")


def _gpu_engine():
    spec = importlib.util.spec_from_file_location("gpu_engine", REPO / "benchmarks" / "gpu_engine.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_engine"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_dry_run_drives_every_step_and_reports(tmp_path: Path) -> None:
    missing = [n for n in NEEDED if not (REPO / "checkpoints" / n / "model_card.json").is_file()]
    if missing:
        pytest.skip(f"shipped checkpoints missing: {missing}")
    out = tmp_path / "gpu_check.md"
    report = _gpu_engine().main(["--dry-run", "--threads", "1", "--out", str(out)])
    text = out.read_text()
    assert text == "\n".join(report.lines) + "\n"
    for row in ("| MRI |", "| CT |", "| pan-sharpening |", "| natural (x4 SR, prox) |"):
        assert row in text
    for line in ("engine ratio mri", "engine ratio ct", "engine ratio pansharpen", "engine ratio natural",
                 "compiled NFE-tiles/s", "CT volume 32x32x4 at 2 NFE", "|dPSNR| CPU vs cpu again"):
        assert f"- {line}" in text
    results = json.loads(out.with_suffix(".json").read_text())
    assert results["dry_run"] is True and results["device"] == "cpu"
    for task in ("mri", "ct", "pansharpen", "natural"):
        assert results[task]["rate"] > 0 and results[task]["bare"] > 0
    assert results["ct"]["tiles"] == 4 and results["mri"]["tiles"] == 2  # every slice went through reconstruct
    # the same evaluation twice on the same device: the same PSNR for every method, to the last digit
    assert set(results["check"]["dpsnr"]) == {"fbp", "tv", "dds"}
    assert max(results["check"]["dpsnr"].values()) == 0.0


#: the device tool carries at most 64 MiB (tree + carried paths); the packed site folder is ~5.5 MiB
DEVICE_CARRY_MIB = 64
SITE_PACK_HEADROOM_MIB = 8


def test_tracked_tree_leaves_room_for_the_site_pack() -> None:
    """The GPU check can only run if the tree plus ``wheels/gpu-site-*.tar.xz`` fit the device tool's carry."""
    import subprocess

    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.split(b"\0")
    size = sum((REPO / name.decode()).stat().st_size for name in listed if name and (REPO / name.decode()).is_file())
    assert size / 2**20 <= DEVICE_CARRY_MIB - SITE_PACK_HEADROOM_MIB, (
        f"the tree is {size / 2**20:.1f} MiB: with the site pack it no longer fits the GPU check's carry")


def _write_wheel(folder: Path) -> Path:
    """A minimal pure-Python wheel with a module and a test suite (what the pack must keep and drop)."""
    import base64
    import hashlib
    import zipfile

    files = {"toypkg/__init__.py": b"VALUE = 42\n", "toypkg/tests/test_toy.py": b"def test(): pass\n",
             "toypkg-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: toypkg\nVersion: 1.0\n",
             "toypkg-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                           b"Tag: py3-none-any\n"}
    record = "".join(f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
                     f"{len(data)}\n" for name, data in files.items()) + "toypkg-1.0.dist-info/RECORD,,\n"
    wheel = folder / "toypkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, data in {**files, "toypkg-1.0.dist-info/RECORD": record.encode()}.items():
            zf.writestr(name, data)
    return wheel


def test_site_pack_keeps_modules_drops_tests_and_is_reproducible(tmp_path: Path) -> None:
    import subprocess
    import tarfile

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _write_wheel(wheels)
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    packs = []
    for run in ("a", "b"):
        out = tmp_path / run / "site.tar.xz"
        subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_site_pack.py"), "--wheels", str(wheels),
                        "--python-version", version, "--out", str(out)], check=True, capture_output=True)
        packs.append(out.read_bytes())
    assert packs[0] == packs[1]  # deterministic: the same wheels give the same bytes
    with tarfile.open(tmp_path / "a" / "site.tar.xz") as tar:
        names = tar.getnames()
        assert "toypkg/__init__.py" in names and not any("/tests/" in n for n in names)
        tar.extractall(tmp_path / "site", filter="data")
    probe = subprocess.run([sys.executable, "-c", "import toypkg; print(toypkg.VALUE)"], capture_output=True,
                           text=True, env={"PYTHONPATH": str(tmp_path / "site")}, check=True)
    assert probe.stdout.strip() == "42"
