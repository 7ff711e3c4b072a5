"""Hostile but realistic command lines: every one fails cleanly (issue 19).

Each case runs the real CLI in-process (``scorerecon.pipelines.cli.main``) inside a small lab
folder of real files (a CT volume made here, the shipped twix phantom and corrupt copies of it,
pydicom's ``CT_small.dcm``, stores ingested from them, copies of the shipped priors) and asserts:

* exit status 2 (bad input; internal errors would be 1),
* exactly one line on stderr, ``scorerecon: error: ...``, naming the file or option and the problem,
  and no traceback,
* nothing in the lab changed: every file's sha256 and the list of entries are identical before
  and after (no complete-looking output, no ``.partial`` leftover, sources untouched).

The workflow config cases run Snakemake (dry run) and the SIGPIPE / ctrl-C cases the console
script, in subprocesses.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from pydicom.data import get_testdata_file

from scorerecon.pipelines.cli import main

REPO = Path(__file__).resolve().parents[1]
TWIX = REPO / "data" / "demo" / "twix_gre_phantom_2coil.dat"
SCORERECON = Path(sys.executable).parent / "scorerecon"


# ------------------------------------------------------------------------------------------ the lab
def _corrupt_twix_payload(dest: Path) -> None:
    """The phantom with 1 KiB of random bytes inside one image scan's ADC data (headers intact)."""
    import twixtools

    scans = twixtools.read_twix(str(TWIX), parse_pmu=False, verbose=False)
    images = [m for m in scans[-1]["mdb"] if m.is_image_scan()]
    offset = images[len(images) // 2].mem_pos + 192 + 32 + 64  # scan header, channel header, into the data
    data = bytearray(TWIX.read_bytes())
    data[offset:offset + 1024] = np.random.default_rng(0).bytes(1024)
    dest.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lab")
    src, work, cfg, ckpt = (root / n for n in ("src", "work", "cfg", "ckpt"))
    for folder in (src, work, cfg, ckpt):
        folder.mkdir()
    hu = np.full((8, 32, 32), -1000, np.int16)
    hu[:, 8:24, 8:24] = 40
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    nib.save(nib.Nifti1Image(hu.T.copy(), affine), src / "ct.nii.gz")
    nan = hu.astype(np.float32)
    nan[3, 10, 10], nan[4, 11, 11] = np.nan, np.inf
    nib.save(nib.Nifti1Image(nan.T.copy(), affine), src / "ct_nan.nii.gz")
    gz = (src / "ct.nii.gz").read_bytes()
    (src / "cut.nii.gz").write_bytes(gz[: len(gz) // 2])
    (src / "empty.nii.gz").write_bytes(b"")
    shutil.copy(TWIX, src / "phantom.dat")
    _corrupt_twix_payload(src / "corrupt.dat")
    (src / "truncated.dat").write_bytes(TWIX.read_bytes()[: TWIX.stat().st_size * 2 // 3])
    (src / "dicom").mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), src / "dicom" / "IM0001.dcm")
    png = (REPO / "data" / "demo" / "kodim23.png").read_bytes()
    (src / "cut.png").write_bytes(png[:20_000])
    (src / "notstac.json").write_text('{"hello": 1}')
    (src / "notes.xyz").write_text("?")
    (src / "emptydir").mkdir()

    (cfg / "garbage.yaml").write_text("{{{: :")
    (cfg / "list.yaml").write_text("- a\n- b\n")
    (cfg / "noinput.yaml").write_text("name: t\ntraining: {steps: 10}\n")
    (cfg / "steps.yaml").write_text("name: t\ndata: {sources: [x.zarr]}\ntraining: {steps: two}\n")

    for name in ("brain_ddpm", "head_ct_ddpm"):
        shutil.copytree(REPO / "checkpoints" / name, ckpt / name)
    shutil.copytree(REPO / "checkpoints" / "brain_ddpm", ckpt / "tampered")
    weights = ckpt / "tampered" / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    weights.write_bytes(bytes(blob))

    for name, source in (("ct", "ct.nii.gz"), ("ct_nan", "ct_nan.nii.gz"), ("kspace", "phantom.dat")):
        assert main(["ingest", str(src / source), "-o", str(work / f"{name}.zarr"), "-q"]) == 0
    shutil.copytree(work / "ct.zarr", work / "incomplete.zarr")
    meta = json.loads((work / "incomplete.zarr" / "zarr.json").read_text())
    del meta["attributes"]["scorerecon_complete"]
    (work / "incomplete.zarr" / "zarr.json").write_text(json.dumps(meta))
    shutil.copytree(work / "ct.zarr", work / "crcflip.zarr")
    chunk = work / "crcflip.zarr" / "x" / "c" / "0"  # a coordinate chunk (mm positions along x)
    blob = bytearray(chunk.read_bytes())
    blob[len(blob) // 2] ^= 0x40
    chunk.write_bytes(bytes(blob))
    (work / "userdir").mkdir()
    (work / "userdir" / "thesis.tex").write_text("\\documentclass{article}")
    (work / "file.txt").write_text("precious")
    (work / "adir").mkdir()
    (work / "link.zarr").symlink_to(work / "userdir", target_is_directory=True)
    (work / "run").mkdir()
    crate = '{"@context": "https://w3id.org/ro/crate/1.1/context", "@graph": ['  # cut short
    (work / "run" / "ro-crate-metadata.json").write_text(crate)
    return root


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root``: sha256 of files, target of links, 'dir' for folders."""
    state: dict[str, str] = {}
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            path = Path(folder, name)
            rel = str(path.relative_to(root))
            if path.is_symlink():
                state[rel] = "link:" + os.readlink(path)
            elif path.is_dir():
                state[rel] = "dir"
            else:
                state[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


# ----------------------------------------------------------------------------------------- the cases
CT_CKPT = "../ckpt/head_ct_ddpm"
MRI_CKPT = "../ckpt/brain_ddpm"
RECON = "reconstruct --task ct --input ct.zarr -o out.zarr --views 8 --slices 3 --checkpoint " + CT_CKPT
EVAL = "evaluate --task ct --input ct.zarr --slices 3 --views 8 --nfe 2 --checkpoint " + CT_CKPT
SAMPLE = f"sample {MRI_CKPT} --n 1 --nfe 30 -o out.png"

# (id, command run in lab/work, text the line must name (file or option), problem word)
CASES = [
    # ingest
    ("ingest-missing-source", "ingest ../src/absent.nii.gz -o out.zarr", "absent.nii.gz", "no such file"),
    ("ingest-unknown-suffix", "ingest ../src/notes.xyz -o out.zarr", "notes.xyz", "unrecognised file type"),
    ("ingest-twix-random-payload", "ingest ../src/corrupt.dat -o out.zarr -q", "corrupt.dat", "absurd"),
    ("ingest-twix-truncated", "ingest ../src/truncated.dat -o out.zarr -q", "truncated.dat", "truncated"),
    ("ingest-nifti-cut", "ingest ../src/cut.nii.gz -o out.zarr -q", "cut.nii.gz", "corrupt"),
    ("ingest-nifti-empty", "ingest ../src/empty.nii.gz -o out.zarr -q", "empty.nii.gz", "Empty file"),
    ("ingest-png-cut", "ingest ../src/cut.png -o out.zarr -q", "cut.png", "truncated"),
    ("ingest-png-as-nifti", "ingest ../src/cut.png --reader nifti -o out.zarr -q", "cut.png", "NIfTI"),
    ("ingest-mixed-formats", "ingest ../src/ct.nii.gz ../src/cut.png -o out.zarr", "ct.nii.gz", "mix"),
    ("ingest-json-not-stac", "ingest ../src/notstac.json -o out.zarr", "notstac.json", "not a STAC"),
    ("ingest-empty-folder", "ingest ../src/emptydir -o out.zarr", "emptydir", "no files"),
    ("ingest-out-under-file", "ingest ../src/ct.nii.gz -o file.txt/out.zarr", "file.txt", "not a directory"),
    ("ingest-out-is-file", "ingest ../src/ct.nii.gz -o file.txt --overwrite -q", "file.txt", "existing file"),
    ("ingest-out-user-folder", "ingest ../src/ct.nii.gz -o userdir --overwrite -q", "userdir",
     "not an output scorerecon wrote"),
    ("ingest-out-is-source-folder", "ingest ../src/dicom -o ../src/dicom --overwrite -q", "dicom",
     "a source this command reads"),
    ("ingest-out-is-source-parent", "ingest ../src/ct.nii.gz -o ../src --overwrite -q", "src", "contains"),
    ("ingest-out-exists", "ingest ../src/ct.nii.gz -o ct.zarr -q", "ct.zarr", "already exists"),
    ("ingest-out-symlink", "ingest ../src/ct.nii.gz -o link.zarr --overwrite -q", "link.zarr", "symbolic link"),
    ("ingest-series-on-nifti", "ingest ../src/ct.nii.gz -o out.zarr --series 1.2.3", "--series", "nifti source"),
    ("ingest-item-on-dicom", "ingest ../src/dicom -o out.zarr --item x", "--item", "dicom source"),
    ("ingest-bad-compression", "ingest ../src/ct.nii.gz -o out.zarr --compression brotli", "--compression",
     "invalid choice"),
    # info
    ("info-missing-store", "info absent.zarr", "absent.zarr", "does not exist"),
    ("info-not-a-store", "info userdir", "userdir", "not a readable Zarr store"),
    ("info-incomplete-store", "info incomplete.zarr", "incomplete.zarr", "incomplete"),
    ("info-coordinate-bit-flip", "info crcflip.zarr", "crcflip.zarr", "checksum"),
    # export
    ("export-missing-store", "export absent.zarr -f nifti -o out.nii.gz", "absent.zarr", "does not exist"),
    ("export-incomplete-store", "export incomplete.zarr -f nifti -o out.nii.gz", "incomplete.zarr", "incomplete"),
    ("export-coordinate-bit-flip", "export crcflip.zarr -f nifti -o out.nii.gz", "crcflip.zarr", "checksum"),
    ("export-nifti-no-extension", "export ct.zarr -f nifti -o out", "out", ".nii.gz"),
    ("export-nifti-to-folder", "export ct.zarr -f nifti -o adir", "adir", "is a directory"),
    ("export-under-file", "export ct.zarr -f nifti -o file.txt/out.nii.gz", "file.txt", "not a directory"),
    ("export-window-reversed", "export ct.zarr -f png -o out --window 1 0", "--window", "LO must be below HI"),
    ("export-window-nan", "export ct.zarr -f png -o out --window nan 1", "--window", "finite"),
    ("export-geotiff-not-geo", "export ct.zarr -f geotiff -o out.tif", "ct.zarr", "no CRS"),
    ("export-kspace-as-png", "export kspace.zarr -f png -o out", "kspace.zarr", "image"),
    ("export-unknown-group", "export ct.zarr -f png -o out --group nope", "ct.zarr", "no group"),
    ("export-unknown-format", "export ct.zarr -f jpeg -o out", "--format", "invalid choice"),
    ("export-dicom-non-finite", "export ct_nan.zarr -f dicom -o out", "ct_nan.zarr", "2 non-finite"),
    ("export-dicom-into-user-folder", "export ct.zarr -f dicom -o userdir --overwrite", "userdir",
     "not an output scorerecon wrote"),
    ("export-omezarr-over-its-store", "export ct.zarr -f omezarr -o ct.zarr --overwrite", "ct.zarr",
     "a source this command reads"),
    ("export-nifti-over-its-source", "export ct.zarr -f nifti -o ../src/ct.nii.gz --overwrite", "ct.nii.gz",
     "a source this command reads"),
    # reconstruct
    ("reconstruct-device-tpu9", RECON + " --device tpu9", "--device", "unknown device"),
    ("reconstruct-crop-huge", RECON + " --crop 100000", "--crop", "between 1 and"),
    ("reconstruct-crop-negative", RECON + " --crop -5", "--crop", "between 1 and"),
    ("reconstruct-nfe-zero", RECON + " --nfe 0", "--nfe", "between 1 and"),
    ("reconstruct-samples-zero", RECON + " --samples 0", "--samples", "between 1 and"),
    ("reconstruct-views-zero", "reconstruct --task ct --input ct.zarr -o out.zarr --views 0", "--views", "between"),
    ("reconstruct-nan-voxels", RECON.replace("ct.zarr", "ct_nan.zarr"), "ct_nan.zarr", "1 non-finite"),
    ("reconstruct-over-its-input", "reconstruct --task ct --input ct.zarr -o ct.zarr --overwrite --views 8",
     "ct.zarr", "a source this command reads"),
    ("reconstruct-missing-input", RECON.replace("--input ct.zarr", "--input absent.zarr"), "absent.zarr",
     "does not exist"),
    ("reconstruct-views-and-arc", RECON + " --arc 90", "--arc", "exactly one"),
    ("reconstruct-slice-outside", RECON.replace("--slices 3", "--slices 99"), "ct.zarr", "outside"),
    ("reconstruct-tampered-prior", RECON.replace(CT_CKPT, "../ckpt/tampered"), "tampered", "sha256"),
    ("reconstruct-out-under-file", RECON.replace("-o out.zarr", "-o file.txt/out.zarr"), "file.txt",
     "not a directory"),
    # evaluate
    ("evaluate-coils-zero", EVAL + " --coils 0", "--coils", "between 1 and"),
    ("evaluate-samples-zero", EVAL + " --samples 0", "--samples", "between 1 and"),
    ("evaluate-crop-zero", EVAL + " --crop 0", "--crop", "between 1 and"),
    ("evaluate-baselines-bogus", EVAL + " --baselines bogus", "bogus", "unknown ct baseline"),
    ("evaluate-solvers-bogus", EVAL + " --solvers bogus", "bogus", "unknown solver"),
    ("evaluate-json-to-folder", EVAL + " --json adir", "adir", "is a directory"),
    ("evaluate-json-under-file", EVAL + " --json file.txt/r.json", "file.txt", "not a directory"),
    ("evaluate-images-not-npz", EVAL + " --images pics.png", "pics.png", "ending in .npz"),
    ("evaluate-images-to-folder", EVAL + " --images adir", "adir", "is a directory"),
    ("evaluate-nan-voxels", EVAL.replace("ct.zarr", "ct_nan.zarr"), "ct_nan.zarr", "1 non-finite"),
    ("evaluate-slices-garbage", EVAL.replace("--slices 3", "--slices abc"), "--slices", "expected integers"),
    ("evaluate-ct-without-views", EVAL.replace("--views 8", ""), "--views", "exactly one"),
    ("evaluate-device-tpu9", EVAL + " --device tpu9", "--device", "unknown device"),
    # sample
    ("sample-n-zero", SAMPLE + " --n 0", "--n", "between 1 and"),
    ("sample-nfe-zero", SAMPLE.replace("--nfe 30", "--nfe 0"), "--nfe", "between 1 and"),
    ("sample-size-not-multiple", SAMPLE + " --size 33 33", "brain_ddpm", "multiple of 4"),
    ("sample-size-wrong-dims", SAMPLE + " --size 64 64 64", "brain_ddpm", "needs 2 values"),
    ("sample-output-no-extension", SAMPLE.replace("-o out.png", "-o out"), "out", ".png"),
    ("sample-output-folder", SAMPLE.replace("-o out.png", "-o adir"), "adir", "is a directory"),
    ("sample-missing-checkpoint", SAMPLE.replace(MRI_CKPT, "../ckpt/absent"), "absent", "not"),
    ("sample-tampered-checkpoint", SAMPLE.replace(MRI_CKPT, "../ckpt/tampered"), "tampered", "sha256"),
    ("sample-device-tpu9", SAMPLE + " --device tpu9", "--device", "unknown device"),
    # train
    ("train-missing-config", "train ../cfg/absent.yaml -o outckpt", "absent.yaml", "does not exist"),
    ("train-not-yaml", "train ../cfg/garbage.yaml -o outckpt", "garbage.yaml", "not valid YAML"),
    ("train-not-a-mapping", "train ../cfg/list.yaml -o outckpt", "list.yaml", "mapping"),
    ("train-no-data", "train ../cfg/noinput.yaml -o outckpt", "noinput.yaml", "data"),
    ("train-steps-text", "train ../cfg/steps.yaml -o outckpt", "steps.yaml", "steps"),
    ("train-device-tpu9", "train ../cfg/steps.yaml -o outckpt --device tpu9", "--device", "unknown device"),
    # provenance
    ("provenance-verify-missing", "provenance verify absent.zarr", "absent.zarr", "no such file"),
    ("provenance-verify-truncated-crate", "provenance verify run", "ro-crate-metadata.json",
     "not a readable RO-Crate"),
    ("provenance-prov-truncated-crate", "provenance prov run", "ro-crate-metadata.json", "not a readable RO-Crate"),
    ("provenance-prov-no-crate", "provenance prov adir", "adir", "RO-Crate"),
    ("provenance-prov-output-folder", "provenance prov run -o adir", "adir", "is a directory"),
]
if torch.cuda.is_available():  # the no-CUDA case needs a machine without CUDA
    CASES = [c for c in CASES if "cuda" not in c[1]]
else:
    CASES.append(("reconstruct-device-cuda-absent", RECON + " --device cuda", "--device", "CUDA is not available"))


def test_enough_cases_across_every_command() -> None:
    assert len(CASES) >= 60
    commands = {case[1].split()[0] for case in CASES}
    assert commands >= {"ingest", "export", "reconstruct", "evaluate", "sample", "train", "provenance"}


@pytest.mark.parametrize(("command", "names", "problem"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(lab, monkeypatch, capsys, command, names, problem):
    monkeypatch.chdir(lab / "work")
    before = snapshot(lab)
    code = main(shlex.split(command))
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured.err
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("scorerecon: error: "), lines
    assert names in lines[0] and problem in lines[0], lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert snapshot(lab) == before  # no output, no partial leftover, sources untouched


def test_debug_adds_the_traceback_and_internal_errors_name_their_place(lab, monkeypatch, capsys):
    monkeypatch.chdir(lab / "work")
    assert main(["--debug", "info", "absent.zarr"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("scorerecon: error: absent.zarr")

    import scorerecon.pipelines.info as info

    def broken(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(info, "_run", broken)  # register() sets the parser's func from this name
    assert main(["info", "ct.zarr"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "internal error in tests/test_fuzz_cli.py:" in lines[0]
    assert "ZeroDivisionError: a bug" in lines[0] and "--debug" in lines[0]


def test_png_export_scales_from_the_finite_values(lab, tmp_path, capsys):
    """A float volume with one NaN and one Inf voxel: the window is the finite range, not 'no finite values'."""
    out = tmp_path / "png"
    assert main(["export", str(lab / "work" / "ct_nan.zarr"), "-f", "png", "-o", str(out)]) == 0
    from PIL import Image

    image = Image.open(out / "image_z0003.png")
    assert json.loads(image.text["scorerecon"])["mapping"]["window"] == [-1000.0, 40.0]
    pixels = np.asarray(image)
    assert pixels[10, 10] == 0 and pixels[0, 0] == 0 and pixels[12, 12] == 65535  # NaN -> 0


# ------------------------------------------------------------------------------ workflow configs
WORKFLOW_CASES = [
    ("input-name-escapes-outdir", {"outdir": "out", "inputs": {"../../escape": {"paths": ["a.png"]}}},
     "inputs", "not a plain name"),
    ("evaluate-store-names-no-input", {"outdir": "out", "inputs": {"a": {"paths": ["a.png"]}},
                                       "evaluate": {"mri": {"store": "nope", "checkpoint": "brain_ddpm",
                                                            "slices": "1"}}},
     "evaluate.mri.store", "names no entry of `inputs`"),
    ("typo-in-a-top-level-key", {"outdir": "out", "inputs": {"a": {"paths": "a.png"}}, "evalute": {}},
     "(top level)", "'evalute' was unexpected"),
]


@pytest.mark.parametrize(("config", "where", "problem"), [c[1:] for c in WORKFLOW_CASES],
                         ids=[c[0] for c in WORKFLOW_CASES])
def test_bad_workflow_config_is_one_line(tmp_path, config, where, problem):
    path = tmp_path / "my.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    result = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "-n",
                             "--cores", "1", "--configfile", str(path)], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300, check=False)
    # Snakemake's own notice that it applies the workflow profile (profiles/default, every run) comes first
    notice = f"Using workflow specific profile {REPO / 'profiles' / 'default'} for setting default command line"
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith(notice)]
    assert result.returncode != 0
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("scorerecon workflow: error: ") and str(path) in lines[0]
    assert where in lines[0] and problem in lines[0], lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "out").exists()


# -------------------------------------------------------------------------- signals and pipes
def test_closed_stdout_pipe_is_quiet(lab):
    """`scorerecon info x | head`: the reader went away; no BrokenPipe traceback, exit 141."""
    proc = subprocess.Popen([str(SCORERECON), "info", "ct.zarr"], cwd=lab / "work", stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert err == ""


def test_ctrl_c_during_start_up_is_one_line(lab):
    before = snapshot(lab)
    # a shell's background job (`make test &`) ignores SIGINT and children inherit that, so Python would
    # never raise KeyboardInterrupt: start the command the way a terminal does, with SIGINT at its default
    proc = subprocess.Popen([str(SCORERECON), *shlex.split(RECON)], cwd=lab / "work", stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(0.5)  # the command is still importing torch and building its parser
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    lines = err.decode().strip().splitlines()
    assert proc.returncode == 130 and lines == ["scorerecon: interrupted"], err.decode()
    assert snapshot(lab) == before
