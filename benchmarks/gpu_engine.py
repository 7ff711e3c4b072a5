"""The prepared GPU check: what ``scorerecon reconstruct`` / ``evaluate`` run, timed against the bare network.

Nothing here reimplements a task: every number comes from the code paths users run.

* **MRI and CT**: ``scorerecon reconstruct --task mri|ct`` (in-process through the CLI's ``main``,
  so one CUDA context and one compile cache serve every run) on Zarr stores ingested from NIfTI
  volumes made of the real demo data (Colin27 T1, the head CT), with a random-weight prior of the
  ``--preset`` network (``base``: MONAI ``DiffusionModelUNet``, 26.6 M parameters) saved as a
  checkpoint with the shipped prior's card (its normalisation, SDE and parametrisation). Engine
  NFE-tiles/s = slices x NFE x samples / the sampling seconds the output store records
  (``attrs["reconstruction"]["sampling_seconds"]``).
* **pan-sharpening**: :func:`scorerecon.pipelines.reconstruct_remote.pansharpen_scene` (what
  ``reconstruct`` and ``evaluate --task pansharpen`` call; the tile engine, fused tiles) on a
  scene of ``--size`` tiles; its :class:`~scorerecon.pipelines.engine.EngineResult` counts.
* **natural images**: :func:`scorerecon.pipelines.tasks.natural.restore_zero_shot` (what
  ``evaluate --task sr`` runs) on a ``--size`` crop of the Kodak demo photo, x4 SR, DiffPIR.

Each is run once at 1 NFE first (cuDNN autotuning, compilation, page-ins), then timed. The bare
network is the same checkpoint's ``model.predict`` at the batch the task ran, in the precision the
task ran (read from the output's record where it says, else the loaded model as it is: fp32 eager):
the **engine ratio** is task NFE-tiles/s over bare NFE-samples/s. Where ``reconstruct`` accepts
``--compile`` / ``--precision`` (the engine's options), the MRI and CT runs pass them
(``--compile``, ``--precision auto``); the **compiled NFE-tiles/s** row is then the CT volume's,
else the bare network's compiled rate is printed beside a note that no user path compiles.

Then the **CT volume** (``--volume``, default 256 x 256 x 128: the head CT reflected to 128
slices) reconstructed at ``--nfe`` by one ``reconstruct`` command, its wall time; and the
**CPU-vs-GPU check**: ``scorerecon evaluate --task ct`` on two held-out slices of the real head CT
with the shipped ``head_ct_ddpm`` prior, once on the CPU and once on the GPU, |dPSNR| per method.

Targets (issue 16): engine ratio >= 0.85 per task; >= 525 NFE-tiles/s compiled at 256^2 with the
26.6 M network; the 256 x 256 x 128 CT volume at 50 NFE <= 30 s; |dPSNR| <= 0.1 dB.

    python benchmarks/gpu_engine.py --device cuda --out results/gpu_check/gpu_check.md   # the H200 check
    python benchmarks/gpu_engine.py --dry-run                                              # tiny, on the CPU

``--dry-run`` runs every step end to end at toy sizes (tiny preset, 32^2 tiles, 2 NFE, a
32 x 32 x 4 volume; the "GPU" side of the check is the CPU again): for checking the script on a
machine without a GPU, not for numbers. ``benchmarks/run_gpu_check.sh`` is the wrapper the GPU
machine runs (``docs/gpu_check.md``).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "data" / "demo"
CHECKPOINTS = REPO / "checkpoints"
TARGETS = {"ratio": 0.85, "compiled": 525.0, "volume_s": 30.0, "dpsnr": 0.1}
#: the shipped priors whose cards (normalisation, SDE, channels) the random-weight networks borrow
CARDS = {"mri": "brain_ddpm", "ct": "head_ct_ddpm", "pansharpen": "landsat8_pansharpen", "natural": "photos_prior"}


@dataclass
class Sizes:
    preset: str
    size: int
    slices: int  # MRI slices per run (one batch in reconstruct)
    volume: tuple[int, int, int]  # H, W, D of the CT volume
    nfe: int
    pan_nfe: int
    check_nfe: int
    check_crop: int
    compile: str | None
    repeats: int

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Sizes:
        if args.dry_run:
            return cls("tiny", 32, 2, (32, 32, 4), 2, 1, 2, 32, None, 1)
        h, w, d = (int(v) for v in args.volume.split("x"))
        return cls(args.preset, args.size, args.slices, (h, w, d), args.nfe, args.pan_nfe, args.check_nfe,
                   args.check_crop, None if args.compile == "none" else args.compile, args.repeats)


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)

    def emit(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)


# --------------------------------------------------------------------------------------------
# setup: random-weight checkpoints with the shipped cards, inputs made of the real demo data
# --------------------------------------------------------------------------------------------
def make_checkpoint(task: str, preset: str, root: Path) -> Path:
    """``root/<task>_<preset>``: a random-weight ``preset`` network saved with the shipped prior's card."""
    from scorerecon.models.checkpoint import read_card, save_score_model
    from scorerecon.models.networks import build_network, unet_config

    card = read_card(CHECKPOINTS / CARDS[task])
    net = card["network"]
    config = unet_config(preset, int(net.get("spatial_dims", 2)), data_channels=int(net["data_channels"]),
                         cond_channels=int(net.get("cond_channels", 0)))
    torch.manual_seed(0)
    network = build_network(config, use_flash_attention=False)
    keep = {k: v for k, v in card.items() if k not in ("weights", "format", "format_version")}
    keep.update(network=config, name=f"{card.get('name', task)}_{preset}_random")
    out = root / f"{task}_{preset}"
    save_score_model(out, network, keep)
    return out


def _fit(volume: np.ndarray, size: int, depth: int) -> np.ndarray:
    """``(x, y, z)`` volume centre-cropped / edge-padded to ``size x size`` in-plane, reflected to ``depth`` slices."""
    out = volume
    for axis in (0, 1):
        n = out.shape[axis]
        if n >= size:
            start = (n - size) // 2
            out = np.take(out, range(start, start + size), axis=axis)
        else:
            pad = [(0, 0)] * 3
            pad[axis] = ((size - n) // 2, size - n - (size - n) // 2)
            out = np.pad(out, pad, mode="edge")
    z = out.shape[2]
    if depth > z:
        out = np.pad(out, ((0, 0), (0, 0), (0, depth - z)), mode="reflect" if depth - z < z else "wrap")
    else:
        start = (z - depth) // 2
        out = out[:, :, start:start + depth]
    return np.ascontiguousarray(out, dtype=np.float32)


def make_store(source: Path, size: int, depth: int, root: Path, name: str) -> Path:
    """A ``size x size x depth`` NIfTI made of a real demo volume, ingested by ``scorerecon ingest``."""
    import nibabel as nib

    img = nib.load(source)
    data = _fit(np.asarray(img.dataobj, dtype=np.float32), size, depth)
    nifti = root / f"{name}.nii.gz"
    nib.save(nib.Nifti1Image(data, img.affine), nifti)
    store = root / f"{name}.zarr"
    _cli(["ingest", str(nifti), "-o", str(store), "--quiet"])
    return store


def _cli(argv: list[str]) -> str:
    """Run a ``scorerecon`` command in this process; its stdout, or ``SystemExit`` with the reason."""
    from scorerecon.pipelines.cli import main

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(argv)
    if code != 0:
        raise SystemExit(f"scorerecon {' '.join(argv[:3])} ... failed (exit {code}):\n{buffer.getvalue()[-2000:]}")
    return buffer.getvalue()


def reconstruct_options() -> set[str]:
    """The option strings ``scorerecon reconstruct`` accepts (so engine options are passed once they exist)."""
    from scorerecon.pipelines.cli import build_parser

    parser = build_parser(["reconstruct"])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices["reconstruct"]._option_string_actions)


# --------------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_rate(model: Any, shape: tuple[int, ...], batch: int, device: torch.device, cond_channels: int = 0,
              repeats: int = 5, warmup: int = 2) -> float:
    """NFE-samples/s of one ``model.predict`` on ``batch`` tiles of ``shape``, as the model is (no wrapper)."""
    x = torch.randn((batch, *shape), device=device)
    t = torch.full((batch,), 0.5, device=device)
    cond = torch.randn((batch, cond_channels, *shape[1:]), device=device) if cond_channels else None
    times = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            _sync(device)
            start = time.perf_counter()
            model.predict(x, t, cond)
            _sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return batch / sorted(times)[len(times) // 2]


_BACKEND_SWITCHES = (("cuda.matmul", "allow_tf32"), ("cudnn", "allow_tf32"), ("cuda.matmul", "fp32_precision"),
                     ("cudnn.conv", "fp32_precision"), ("cudnn.rnn", "fp32_precision"), ("", "fp32_precision"))


@contextlib.contextmanager
def _backends_restored():
    """The TF32 / fp32-precision switches as they were: a TileEngine sets them process-wide for its policy,
    and the next task must run (and be timed) as it would alone."""
    saved = []
    for path, name in _BACKEND_SWITCHES:
        obj = torch.backends
        for part in filter(None, path.split(".")):
            obj = getattr(obj, part, None)
        if obj is not None and hasattr(obj, name):
            saved.append((obj, name, getattr(obj, name)))
    matmul = torch.get_float32_matmul_precision()
    try:
        yield
    finally:
        for obj, name, value in saved:
            with contextlib.suppress(Exception):
                setattr(obj, name, value)
        torch.set_float32_matmul_precision(matmul)


def engine_bare_rate(model: Any, shape: tuple[int, ...], batch: int, device: torch.device, precision: str,
                     compile_mode: str | None, cond_channels: int = 0) -> float:
    """NFE-samples/s of the network under the engine's precision policy / compile (``TileEngine.forward_seconds``)."""
    from scorerecon.pipelines.engine import EngineConfig, TileEngine

    with _backends_restored():
        engine = TileEngine(copy.deepcopy(model), EngineConfig(device=device, precision=precision,
                                                               compile=compile_mode, batch_size=batch))
        seconds = engine.forward_seconds(shape, batch, repeats=5, warmup=3 if compile_mode else 2,
                                         cond_channels=cond_channels)
    return batch / seconds


def _record(store: Path) -> dict[str, Any]:
    from scorerecon.modalities.io.store import attrs_json, open_store

    return attrs_json(open_store(store), "reconstruction") or {}


def _engine_variant(record: dict[str, Any]) -> tuple[str | None, str | None, int | None]:
    """(precision, compile, batch) the reconstruction says it ran with, where it says so."""
    engine = record.get("execution") if isinstance(record.get("execution"), dict) else {}
    return engine.get("precision"), engine.get("compile"), engine.get("batch_size")


def run_reconstruct(task: str, store: Path, ckpt: Path, out: Path, nfe: int, slices: str, device: torch.device,
                    extra: list[str], repeats: int) -> dict[str, Any]:
    """``scorerecon reconstruct`` warm (1 NFE), then timed ``repeats`` times (best kept)."""
    base = ["reconstruct", "--task", task, "--input", str(store), "--checkpoint", str(ckpt), "--slices", slices,
            "--device", str(device), "--seed", "0", "--no-resample", "--overwrite", "--quiet", *extra]
    _cli([*base, "--nfe", "1", "-o", str(out)])
    best = None
    for _ in range(repeats):
        start = time.perf_counter()
        _cli([*base, "--nfe", str(nfe), "-o", str(out)])
        wall = time.perf_counter() - start
        record = _record(out)
        if best is None or record["sampling_seconds"] < best["record"]["sampling_seconds"]:
            best = {"wall": wall, "record": record}
    return best


# --------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> Report:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="where the check runs (auto: CUDA when present)")
    p.add_argument("--preset", default="base", help="UNet preset of the timed networks (base: 26.6 M)")
    p.add_argument("--size", type=int, default=256, help="slice / tile size")
    p.add_argument("--slices", type=int, default=64, help="MRI slices reconstructed in one run")
    p.add_argument("--volume", default="256x256x128", help="HxWxD of the CT volume")
    p.add_argument("--nfe", type=int, default=50)
    p.add_argument("--pan-nfe", type=int, default=10, help="pan-sharpening DDIM steps per sample (2 samples)")
    p.add_argument("--check-nfe", type=int, default=20, help="NFE of the CPU-vs-GPU evaluation")
    p.add_argument("--check-crop", type=int, default=128, help="crop of the CPU-vs-GPU evaluation's slices")
    p.add_argument("--compile", default="default", help="torch.compile mode for the compiled rows, or none")
    p.add_argument("--repeats", type=int, default=1, help="timed runs per task (best kept)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--dry-run", action="store_true", help="toy sizes on any device: checks the script, no numbers")
    p.add_argument("--workdir", default=None, help="scratch folder (default: a temporary one, removed)")
    p.add_argument("--out", default=None, help="also write the report here (markdown; a .json beside it)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from scorerecon.models.checkpoint import load_score_model
    from scorerecon.pipelines.device import resolve_device
    from scorerecon.pipelines.hardware import one_line

    device = resolve_device("cpu" if args.dry_run and args.device == "auto" else args.device)
    cuda = device.type == "cuda"
    sizes = Sizes.from_args(args)
    rep = Report()
    root = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="gpu_check_"))
    root.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    rep.results.update(device=str(device), sizes=sizes.__dict__, dry_run=bool(args.dry_run),
                       python=platform.python_version(), torch=torch.__version__)
    try:
        options = reconstruct_options()
        engine_opts = []
        if "--precision" in options:
            engine_opts += ["--precision", "auto"]
        if sizes.compile and "--compile" in options:
            engine_opts += ["--compile", sizes.compile]
        production_compiles = "--compile" in options and sizes.compile is not None
        rep.emit(f"# GPU check: {one_line(str(device))}")
        rep.emit()
        known = sorted(o for o in options if o in ("--precision", "--compile", "--batch-size"))
        rep.emit(f"reconstruct accepts engine options: {known or 'none'}; passed to MRI/CT: {engine_opts or 'none'}")
        rep.emit()
        ckpts = {task: make_checkpoint(task, sizes.preset, root) for task in CARDS}
        size, (vh, vw, vd) = sizes.size, sizes.volume
        mri_store = make_store(DEMO / "colin27_t1.nii.gz", size, sizes.slices, root, "mri_volume")
        ct_volume = make_store(DEMO / "head_ct_hu.nii.gz", vh, vd, root, "ct_volume")
        params = {}
        rep.emit(f"## Engine ratio: each task as users run it vs the bare network ('{sizes.preset}', {size}^2, "
                 f"{sizes.nfe} NFE; pan-sharpening {sizes.pan_nfe} NFE x 2 samples)")
        rep.emit()
        rep.emit("| task | bare network's precision | tiles | batch | task NFE-tiles/s | bare NFE-samples/s | ratio "
                 "| time |")
        rep.emit("|---|---|---|---|---|---|---|---|")

        def row(name: str, variant: str, tiles: int, batch: int, rate: float, bare: float, note: str) -> None:
            rep.emit(f"| {name} | {variant} | {tiles} | {batch} | {rate:.1f} | {bare:.1f} | {rate / bare:.2f} "
                     f"| {note} |")

        # ---------------------------------------------------------------- MRI and CT through reconstruct
        for task, store, n, extra in (
                ("mri", mri_store, sizes.slices, ["--mask", "random", "--accel", "4"]),
                ("ct", ct_volume, vd, ["--views", "60"])):
            run = run_reconstruct(task, store, ckpts[task], root / f"{task}_out.zarr", sizes.nfe, f"0:{n}", device,
                                  [*extra, *engine_opts], sizes.repeats)
            record = run["record"]
            tiles = n * int(record.get("samples", 1) or 1)
            rate = tiles * int(record["nfe"]) / float(record["sampling_seconds"])
            precision, compiled, batch = _engine_variant(record)
            model = load_score_model(ckpts[task], device=device)
            shape = (int(model.card["network"]["data_channels"]), vh if task == "ct" else size,
                     vw if task == "ct" else size)
            batch = int(batch or tiles)
            if precision is None and compiled is None and not cuda:
                bare, variant = bare_rate(model, shape, batch, device), "as loaded (fp32 eager)"
            elif precision is None and compiled is None:
                # the output does not say how the network ran: the faster eager variant is the denominator
                fp32 = bare_rate(model, shape, batch, device)
                bf16 = engine_bare_rate(model, shape, batch, device, "auto", None)
                bare = max(fp32, bf16)
                variant = f"not recorded: vs the faster eager bare (fp32 {fp32:.0f}, bf16 {bf16:.0f})"
            else:
                bare = engine_bare_rate(model, shape, batch, device, precision or "auto", compiled)
                variant = f"{precision or 'auto'}{', compiled ' + compiled if compiled else ''}"
            row(task.upper(), variant, n, batch, rate, bare, f"{run['wall']:.1f} s command")
            params[task] = {"wall_s": run["wall"], "sampling_s": record["sampling_seconds"], "nfe": record["nfe"],
                            "tiles": tiles, "batch": batch, "rate": rate, "bare": bare, "ratio": rate / bare,
                            "variant": variant}
            if task == "ct":
                params["volume"] = {"shape": [vh, vw, vd], "nfe": int(record["nfe"]), "wall_s": run["wall"],
                                    "sampling_s": record["sampling_seconds"], "compiled": production_compiles}
            del model

        # ---------------------------------------------------------------- pan-sharpening: the engine, fused tiles
        from scorerecon.pipelines.reconstruct_remote import pansharpen_scene

        model = load_score_model(ckpts["pansharpen"], device=device)
        data = model.card["data"]
        ratio, n_ms = int(data["ratio"]), len(data["bands"])
        rng = np.random.default_rng(0)
        extent = size * 3 // ratio * ratio  # about 4 x 4 overlapping tiles per sample
        ms = rng.uniform(6000, 12000, (n_ms, extent // ratio, extent // ratio)).astype(np.float32)
        pan = rng.uniform(6000, 12000, (extent, extent)).astype(np.float32)
        kw = {"nfe": 1, "samples": 2, "seed": 0, "tile": size, "device": str(device)}
        with _backends_restored():  # the task's engine sets its precision policy process-wide
            pansharpen_scene(model, data, ms, pan, **kw)  # warm-up
            _, _, res = min((pansharpen_scene(model, data, ms, pan, **{**kw, "nfe": sizes.pan_nfe})
                             for _ in range(sizes.repeats)), key=lambda r: r[2].seconds)
        cond = int(model.card["network"].get("cond_channels", 0))
        bare = engine_bare_rate(model, (n_ms, size, size), res.batch_size, device, "auto", None, cond)
        rate = res.nfe_tiles_per_second
        row("pan-sharpening", "engine policy (auto)", res.n_tiles, res.batch_size, rate, bare,
            f"{res.seconds:.1f} s, fused tiles")
        params["pansharpen"] = {"rate": rate, "bare": bare, "ratio": rate / bare, "tiles": res.n_tiles,
                                "batch": res.batch_size, "nfe": res.nfe}
        del model

        # ---------------------------------------------------------------- natural images: evaluate's solver
        from scorerecon.modalities.natural import degradations as deg
        from scorerecon.modalities.natural.datasets import load_rgb
        from scorerecon.pipelines.tasks.natural import natural_problem, restore_zero_shot

        model = load_score_model(ckpts["natural"], device=device)
        photo = load_rgb(DEMO / "kodim23.png")
        r0, c0 = (photo.shape[0] - size) // 2, (photo.shape[1] - size) // 2
        clean = torch.from_numpy(photo[r0:r0 + size, c0:c0 + size].transpose(2, 0, 1)[None].copy()).float()
        op = deg.BicubicDown((size, size), 4)
        problem = natural_problem(op.A(clean).float(), op, model.card, 0.0)
        restore_zero_shot(problem, model, "prox", nfe=1, seed=0, device=device)  # warm-up
        rec = min((restore_zero_shot(problem, model, "prox", nfe=sizes.nfe, seed=0, device=device)
                   for _ in range(sizes.repeats)), key=lambda r: r.seconds)
        rate = rec.nfe / rec.seconds
        bare = bare_rate(model, (3, size, size), 1, device)
        row("natural (x4 SR, prox)", "as loaded (fp32 eager)", 1, 1, rate, bare, f"{rec.seconds:.1f} s")
        params["natural"] = {"rate": rate, "bare": bare, "ratio": rate / bare, "tiles": 1, "batch": 1}
        del model

        rep.emit()

        # ---------------------------------------------------------------- CPU vs GPU on one small evaluation
        head = root / "head_ct.zarr"
        _cli(["ingest", str(DEMO / "head_ct_hu.nii.gz"), "-o", str(head), "--quiet"])
        scores = {}
        other = device if cuda else torch.device("cpu")
        for label, dev in (("cpu", torch.device("cpu")), ("gpu" if cuda else "cpu again", other)):
            out = root / f"check_{dev.type}_{len(scores)}.json"
            _cli(["evaluate", "--task", "ct", "--input", str(head), "--slices", "50,58", "--views", "23",
                  "--crop", str(sizes.check_crop), "--nfe", str(sizes.check_nfe), "--solvers", "dds",
                  "--baselines", "fbp,tv", "--seed", "0", "--checkpoint", str(CHECKPOINTS / "head_ct_ddpm"),
                  "--device", str(dev), "--json", str(out), "--quiet"])
            scores[label] = {k: v["psnr"] for k, v in json.loads(out.read_text())["methods"].items()}
        (a, sa), (b, sb) = scores.items()
        diffs = {k: abs(sa[k] - sb[k]) for k in sa}
        rep.emit(f"## CPU vs {b}: scorerecon evaluate --task ct, head CT slices 50 and 58, {sizes.check_crop}^2, "
                 f"23 views, head_ct_ddpm, dds {sizes.check_nfe} NFE, seed 0")
        rep.emit()
        rep.emit(f"| method | PSNR {a} | PSNR {b} | abs diff dB |")
        rep.emit("|---|---|---|---|")
        for k in sa:
            rep.emit(f"| {k} | {sa[k]:.3f} | {sb[k]:.3f} | {diffs[k]:.3f} |")
        rep.emit()
        params["check"] = {"scores": scores, "dpsnr": diffs}

        # ---------------------------------------------------------------- compiled throughput (headline network)
        model = load_score_model(ckpts["ct"], device=device)
        shape, batch = (1, vh, vw), int(params["ct"]["batch"])
        variants = [("fp32", None)] + ([("bf16", None)] if cuda else [])
        if sizes.compile:
            variants.append(("bf16" if cuda else "fp32", sizes.compile))
        bare_rows = []
        for precision, mode in variants:
            bare_rows.append((precision, mode, engine_bare_rate(model, shape, batch, device, precision, mode)))
        rep.emit(f"## Bare network variants (CT prior '{sizes.preset}', {vh}x{vw}, batch {batch})")
        rep.emit()
        rep.emit("| precision | compile | NFE-samples/s |")
        rep.emit("|---|---|---|")
        for precision, mode, rate in bare_rows:
            rep.emit(f"| {precision} | {mode or 'eager'} | {rate:.1f} |")
        rep.emit()
        compiled_bare = next((r for _, m, r in bare_rows if m), None)
        if production_compiles:
            compiled = params["ct"]["rate"]
            where = "the CT volume through reconstruct --compile"
        else:
            compiled = None
            where = ("no user path compiles (reconstruct has no --compile); the bare compiled network reaches "
                     f"{compiled_bare:.1f} NFE-samples/s" if compiled_bare else "compile off")
        params["compiled"] = {"rate": compiled, "where": where, "bare_compiled": compiled_bare}
        del model

        # ---------------------------------------------------------------- verdicts
        worst_ratio = min(params[t]["ratio"] for t in ("mri", "ct", "pansharpen", "natural"))
        volume = params["volume"]
        verdict = lambda ok: "PASS" if ok else "FAIL"  # noqa: E731
        rep.emit("## Summary against the targets")
        rep.emit()
        for t in ("mri", "ct", "pansharpen", "natural"):
            rep.emit(f"- engine ratio {t}: {params[t]['ratio']:.2f} (target >= {TARGETS['ratio']}): "
                     f"{verdict(params[t]['ratio'] >= TARGETS['ratio'])}")
        if compiled is None:
            rep.emit(f"- compiled NFE-tiles/s at {vh}^2 ('{sizes.preset}'): not measured on a user path: {where}: FAIL")
        else:
            rep.emit(f"- compiled NFE-tiles/s at {vh}^2 ('{sizes.preset}'): {compiled:.1f} ({where}; target >= "
                     f"{TARGETS['compiled']:g}): {verdict(compiled >= TARGETS['compiled'])}")
        rep.emit(f"- CT volume {vh}x{vw}x{vd} at {volume['nfe']} NFE: {volume['wall_s']:.1f} s for the whole "
                 f"reconstruct command in a warm process ({volume['sampling_s']:.1f} s sampling; imports, CUDA start "
                 f"and compilation paid by the warm-up; target <= {TARGETS['volume_s']:g} s): "
                 f"{verdict(volume['wall_s'] <= TARGETS['volume_s'])}")
        worst = max(diffs.values())
        rep.emit(f"- |dPSNR| CPU vs {b}: {worst:.3f} dB, worst method (target <= {TARGETS['dpsnr']}): "
                 f"{verdict(worst <= TARGETS['dpsnr'])}")
        params["worst_ratio"] = worst_ratio
        if args.dry_run:
            rep.emit("\n(dry run: toy sizes on the CPU; the verdicts mean nothing, the steps ran end to end)")
        rep.emit(f"\n{one_line(str(device))}; python {platform.python_version()}, torch {torch.__version__}; "
                 f"check time {time.perf_counter() - t_start:.0f} s")
        rep.results.update(params)
    finally:
        if not args.workdir:
            shutil.rmtree(root, ignore_errors=True)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(rep.lines) + "\n")
        out.with_suffix(".json").write_text(json.dumps(rep.results, indent=1, default=str) + "\n")
    return rep


if __name__ == "__main__":
    main()
