"""Tile-engine throughput against the bare network: is everything around the network nearly free?

Prints four tables (markdown):

(a) bare network throughput, NFE-samples/s = batch / seconds of one ``model.predict`` at the
    tile shape: eager and (with ``--compile``) compiled, fp32 and (CUDA) bf16 autocast + SDPA
    attention; the best variant is the denominator of (c);
(b) full engine throughput, NFE-tiles/s = tiles x NFE / wall seconds of ``TileEngine.run``,
    reading every tile's measurement from a Zarr store in the prefetch thread, sampling with DDIM
    plus the task's data consistency, stitching and writing the result to Zarr:
    MRI (single-coil Cartesian k-space, a random 1D mask per slice, hard k-space projection on
    ``x0``), CT (sparse-view parallel beam, 3 conjugate-gradient data steps per NFE, DDS-style),
    pan-sharpening (4 MS bands conditioned on 4 upsampled MS bands + PAN, overlapping patches,
    no data consistency);
(c) the ratio (b) / (a) per modality, against the bare throughput of the *same* network
    (channels differ per modality) in the same variant; and, measured inside the same run, the
    network's share of the engine's wall time (every network call timed in place, synchronised,
    as in ``sampler_overhead.py``): on a shared, busy CPU a separately timed bare forward swings
    several-fold between runs, so the in-run share is the number to trust there; on a dedicated
    GPU the two agree. Then the wall time of a whole volume (``--volume``, CT slices) at ``--nfe``;
(d) with CUDA: the CPU-vs-GPU check: the same CT slices and seeds (noise drawn on the CPU for
    both) reconstructed on the CPU (fp32) and on the GPU (the engine's production precision);
    PSNR of each against the phantom, and their difference (target <= 0.1 dB).

Networks are MONAI ``DiffusionModelUNet`` presets (:mod:`scorerecon.models.networks`) with random
weights unless ``--checkpoint`` names a trained 1-channel prior for (d); weights do not change
timings. Defaults are CPU-sized (tiny preset, 64^2, batch 4, NFE 10, 64x64x8 volume) and run in
well under 3 minutes on 2 cores; ``benchmarks/run_gpu_check.sh`` runs the full-size H100 check
(base preset 26.6 M, 256^2, batch 64, NFE 50, compile + bf16, 256x256x128 volume).

    python benchmarks/gpu_engine.py                      # CPU, small
    python benchmarks/gpu_engine.py --device cuda --preset base --size 256 --batch 64 --nfe 50 \\
        --compile default --volume 256x256x128
"""

from __future__ import annotations

import argparse
import copy
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import xarray as xr
import zarr

from scorerecon.modalities.ct import ParallelBeamGeometry, ParallelBeamProjector
from scorerecon.modalities.io.store import open_store, write_store
from scorerecon.modalities.mri import CartesianMRI, complex_to_channels, fft2c, random_1d_mask
from scorerecon.models.guidance import ConjugateGradientDataStep, MeasurementProjection
from scorerecon.models.networks import build_network, count_parameters, unet_config
from scorerecon.models.score_model import NetworkScoreModel
from scorerecon.models.sde import VPSDE
from scorerecon.pipelines.device import resolve_device
from scorerecon.pipelines.engine import EngineConfig, EngineResult, TileEngine, TileItem
from scorerecon.pipelines.hardware import one_line
from scorerecon.pipelines.tiling import TileGrid


# --------------------------------------------------------------------------------------------
# synthetic inputs, written to Zarr stores the tasks read tile by tile
# --------------------------------------------------------------------------------------------
def phantom(n: int, slices: int, seed: int = 0) -> np.ndarray:
    """Smooth random ellipse phantoms ``(slices, n, n)`` in [-1, 1] (a stand-in for real data)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[-1:1:n * 1j, -1:1:n * 1j]
    out = np.full((slices, n, n), -1.0, np.float32)
    for z in range(slices):
        img = np.zeros((n, n))
        for _ in range(6):
            cy, cx = rng.uniform(-0.4, 0.4, 2)
            ry, rx = rng.uniform(0.1, 0.5, 2)
            img += rng.uniform(0.2, 0.6) * (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1)
        out[z] = np.clip(img, 0, 1) * 2 - 1
    return out


@dataclass
class Task:
    """What a modality hands the engine (a miniature of pipelines/tasks)."""

    name: str
    grids: list[TileGrid]
    read: Callable
    make_guidance: Callable | None
    channels: int
    cond_channels: int
    truth: dict[str, np.ndarray]


def mri_task(root: Path, size: int, slices: int, seed: int = 0) -> Task:
    """k-space volume + per-slice random 1D masks (R=4) in Zarr; hard projection on x0."""
    img = phantom(size, slices, seed)
    kspace = fft2c(torch.from_numpy(img).to(torch.complex64)[:, None])[:, 0].numpy()
    masks = np.stack([random_1d_mask((size, size), 4, seed=seed + z).numpy().astype(np.uint8)
                      for z in range(slices)])
    ds = xr.Dataset({"kspace": (("coil", "z", "ky", "kx"), kspace[None]),
                     "mask": (("z", "ky", "kx"), masks)})
    path = write_store(ds.chunk({"z": 1}), root / "mri.zarr")
    store = open_store(path)
    grid = TileGrid((2, slices, size, size), (1, None, None), source="mri")

    def read(tile):
        z = tile.origin[0]
        k = torch.from_numpy(np.asarray(store["kspace"][0, z].values))
        mask = torch.from_numpy(np.asarray(store["mask"][z].values)).float()[None]
        y = complex_to_channels((k * mask)[None])[0]
        return TileItem(tile, data={"mask": mask, "y": y})

    def make_guidance(batch):
        return MeasurementProjection(CartesianMRI(batch.data["mask"]), batch.data["y"], on="x0")

    truth = np.stack([img, np.zeros_like(img)])  # complex image as channels (real phantom)
    return Task("MRI", [grid], read, make_guidance, 2, 0, {"mri": truth})


def ct_task(root: Path, size: int, slices: int, n_views: int = 60, cg_iter: int = 3, name: str = "ct",
            seed: int = 1) -> Task:
    """Sparse-view sinograms in Zarr; DDS-style conjugate-gradient data step on x0."""
    img = phantom(size, slices, seed)
    geometry = ParallelBeamGeometry.sparse_view(size, n_views)
    projector = ParallelBeamProjector(geometry)
    att = torch.from_numpy((img + 1) / 2)[:, None]  # attenuation in [0, 1]
    sino = projector.A(att)[:, 0].numpy() / size  # scaled so ||A|| ~ 1
    ds = xr.Dataset({"sinogram": (("z", "angle", "det"), sino.astype(np.float32))})
    store = open_store(write_store(ds.chunk({"z": 1}), root / f"{name}.zarr"))
    grid = TileGrid((1, slices, size, size), (1, None, None), source=name)
    op = _ScaledProjector(projector, 1.0 / size)

    def read(tile):
        sino = np.asarray(store["sinogram"][tile.origin[0]].values)
        return TileItem(tile, data={"sino": torch.from_numpy(sino)[None]})

    def make_guidance(batch):
        # the image lives in [-1, 1]: data term on (x + 1) / 2 -> shift the measurement instead
        y = batch.data["sino"] * 2 - op.A(torch.ones((1, 1, size, size), device=batch.device))
        return ConjugateGradientDataStep(op, y, n_iter=cg_iter, lam=1e-2)

    return Task("CT", [grid], read, make_guidance, 1, 0, {name: img[None]})


class _ScaledProjector(ParallelBeamProjector):
    """``s * A``: the projector scaled to unit-ish norm so CG steps are well conditioned."""

    def __init__(self, base: ParallelBeamProjector, scale: float) -> None:
        self.__dict__.update(base.__dict__)
        self.scale = scale

    def A(self, x):
        return super().A(x) * self.scale

    def AH(self, y):
        return super().AH(y) * self.scale

    def normal(self, x):
        return self.AH(self.A(x))


def pan_task(root: Path, size: int, n_tiles: int, seed: int = 2) -> Task:
    """A 4-band MS raster + PAN in Zarr; overlapping patches conditioned on upsampled MS + PAN."""
    overlap = 0.25
    step = int(size * (1 - overlap))
    per_side = max(1, math.ceil(math.sqrt(n_tiles)))
    extent = size + step * (per_side - 1)
    rng = np.random.default_rng(seed)
    ms = np.stack([phantom(extent, 1, seed + b)[0] for b in range(4)]) + 0.05 * rng.standard_normal((4, extent, extent))
    pan = ms.mean(0, keepdims=True)
    cond = np.concatenate([ms, pan]).astype(np.float32)
    ds = xr.Dataset({"cond": (("band", "y", "x"), cond)})
    store = open_store(write_store(ds.chunk({"band": -1, "y": size, "x": size}), root / "pan.zarr"))
    transform = (10.0, 0.0, 500000.0, 0.0, -10.0, 4200000.0)
    grid = TileGrid((4, extent, extent), (size, size), overlap, source="pan", affine=transform)
    cond_grid = TileGrid((5, extent, extent), (size, size), overlap)

    def read(tile):
        return TileItem(tile, cond=cond_grid.extract(store["cond"], tile).float())

    return Task("pan-sharpening", [grid], read, None, 4, 5, {"pan": ms.astype(np.float32)})


# --------------------------------------------------------------------------------------------
# measurement helpers
# --------------------------------------------------------------------------------------------
def model_for(preset: str, data_channels: int, cond_channels: int, seed: int = 0) -> NetworkScoreModel:
    torch.manual_seed(seed)
    net = build_network(unet_config(preset, 2, data_channels=data_channels, cond_channels=cond_channels),
                        use_flash_attention=False)
    return NetworkScoreModel(net, VPSDE(), "eps").eval()


def variants(device: torch.device, compile_mode: str | None) -> list[tuple[str, str | None]]:
    """(precision, compile) pairs to try for table (a)."""
    if device.type == "cuda":
        out = [("tf32", None), ("bf16", None)]
        if compile_mode:
            out.append(("bf16", compile_mode))
        return out
    return [("fp32", None)] + ([("fp32", compile_mode)] if compile_mode else [])


def writer(root: Path) -> Callable:
    """``on_complete`` that writes a stitched input to a Zarr array (I/O is part of (b))."""

    def on_complete(source, array, grid):
        arr = zarr.open_array(root / f"out_{source}.zarr", mode="w", shape=tuple(array.shape),
                              chunks=(array.shape[0], *grid.tile_size), dtype="float32")
        arr[...] = array.numpy()

    return on_complete


def run_task(engine: TileEngine, task: Task, nfe: int, out: Path | None, keep: bool = False) -> EngineResult:
    return engine.run(task.grids, task.read, sampler="ddim", nfe=nfe, make_guidance=task.make_guidance,
                      channels=task.channels, on_complete=None if out is None or keep else writer(out))


def psnr(x: np.ndarray, ref: np.ndarray) -> float:
    mse = float(np.mean((x - ref) ** 2))
    return 10 * math.log10(float(np.max(ref) - np.min(ref)) ** 2 / mse)


# --------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--preset", default=None, help="UNet preset (default: tiny on CPU, base on CUDA)")
    p.add_argument("--size", type=int, default=None, help="tile size (default 64 CPU / 256 CUDA)")
    p.add_argument("--batch", type=int, default=None, help="tiles per batch (default 4 CPU / 64 CUDA; 0: planner)")
    p.add_argument("--nfe", type=int, default=None, help="NFE per tile (default 10 CPU / 50 CUDA)")
    p.add_argument("--tiles", type=int, default=None, help="tiles per modality in (b) (default 2 x batch)")
    p.add_argument("--compile", default="none", help="none | default | max-autotune-no-cudagraphs | reduce-overhead")
    p.add_argument("--volume", default=None, help="HxWxD volume for the time row (default 64x64x8 CPU / 256x256x128)")
    p.add_argument("--check", choices=("auto", "on", "off"), default="auto",
                   help="CPU-vs-GPU PSNR check (auto: when CUDA is used)")
    p.add_argument("--check-slices", type=int, default=4)
    p.add_argument("--check-nfe", type=int, default=None, help="NFE of the check (default: --nfe, at most 20)")
    p.add_argument("--checkpoint", default=None, help="trained 1-channel prior for the check (else random weights)")
    p.add_argument("--repeats", type=int, default=None, help="timed engine runs per modality, best kept "
                   "(default 1 CPU / 2 CUDA)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", default=None, help="also write the tables to this markdown file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    preset = args.preset or ("base" if cuda else "tiny")
    size = args.size or (256 if cuda else 64)
    batch = (64 if cuda else 4) if args.batch is None else args.batch
    nfe = args.nfe or (50 if cuda else 10)
    n_tiles = args.tiles or 2 * max(batch, 1)
    repeats = args.repeats or (2 if cuda else 1)
    compile_mode = None if args.compile == "none" else args.compile
    vol = [int(v) for v in (args.volume or ("256x256x128" if cuda else "64x64x8")).split("x")]
    lines: list[str] = []
    emit = lambda s="": (print(s, flush=True), lines.append(s))
    root = Path(tempfile.mkdtemp(prefix="gpu_engine_"))
    t_start = time.perf_counter()
    try:
        tasks = {
            "MRI": mri_task(root, size, n_tiles),
            "CT": ct_task(root, size, n_tiles),
            "pan-sharpening": pan_task(root, size, n_tiles),
        }
        models = {name: model_for(preset, t.channels, t.cond_channels) for name, t in tasks.items()}
        headline = model_for(preset, 1, 0)
        cfg = lambda prec, comp, **kw: EngineConfig(device=device, precision=prec, compile=comp,
                                                    batch_size=batch or None, time_network=True, **kw)

        # (a) bare network
        emit(f"## (a) Bare network: MONAI DiffusionModelUNet '{preset}' "
             f"({count_parameters(headline.network) / 1e6:.2f} M, 1 channel), {size}x{size}, batch {batch}")
        emit()
        emit("| variant | ms / forward | NFE-samples/s |")
        emit("|---|---|---|")
        best: dict[str, tuple[float, str, str | None]] = {}
        engines: dict[tuple[str, str | None, str], TileEngine] = {}
        for prec, comp in variants(device, compile_mode):
            eng = TileEngine(headline, cfg(prec, comp))
            sec = eng.forward_seconds((1, size, size), batch or 4, repeats=5, warmup=3 if comp else 2)
            rate = (batch or 4) / sec
            emit(f"| {'compiled ' + comp if comp else 'eager'}, {eng.policy.name} | {sec * 1e3:.1f} | {rate:.1f} |")
            if rate > best.get("headline", (0.0, "", None))[0]:
                best["headline"] = (rate, prec, comp)
                engines[(prec, comp, "CT")] = eng  # the 1-channel network is the CT network's shape
        rate, prec, comp = best["headline"]
        emit(f"\nbest: {rate:.1f} NFE-samples/s ({'compiled ' + comp if comp else 'eager'}, {prec})")
        emit()

        # (b) engine on the three modalities, (c) ratio, in the best variant of (a)
        emit(f"## (b) Tile engine, DDIM {nfe} NFE, {n_tiles} tiles per modality; (c) ratio to the bare network")
        emit()
        emit("| modality | network | tiles | batches | bare NFE-samples/s | engine NFE-tiles/s | ratio b/a "
             "| network share of wall (in-run) | read wait s | wall s |")
        emit("|---|---|---|---|---|---|---|---|---|---|")
        for name, task in tasks.items():
            model = headline if name == "CT" else models[name]
            eng = engines.get((prec, comp, name)) or TileEngine(model, cfg(prec, comp))
            engines[(prec, comp, name)] = eng
            shape = (task.channels, size, size)
            run_task(eng, task, 1, None)  # warm-up at 1 NFE: cuDNN autotuning, CT matrices, compile
            res = min((run_task(eng, task, nfe, root) for _ in range(repeats)), key=lambda r: r.seconds)
            bare = eng.forward_seconds(shape, res.batch_size, repeats=5, cond_channels=task.cond_channels)
            bare_rate = res.batch_size / bare
            share = float("nan") if res.network_seconds is None else res.network_seconds / res.seconds
            emit(f"| {name} | {task.channels}+{task.cond_channels} ch | {res.n_tiles} | {res.n_batches} "
                 f"| {bare_rate:.1f} | {res.nfe_tiles_per_second:.1f} | {res.nfe_tiles_per_second / bare_rate:.2f} "
                 f"| {share:.2f} | {res.read_wait_seconds:.2f} | {res.seconds:.2f} |")
        emit()

        # volume time (CT slices through the same engine)
        h, w, d = vol
        if h != w:
            raise SystemExit("--volume needs square slices (HxHxD)")
        vt = ct_task(root, h, d, name="volume")
        eng = engines[(prec, comp, "CT")] if h == size else TileEngine(headline, cfg(prec, comp))
        res = run_task(eng, vt, nfe, root)
        emit(f"Volume {h}x{w}x{d} (CT, {d} slices, DDIM {nfe} NFE + CG data step, batch {res.batch_size}): "
             f"{res.seconds:.1f} s ({res.nfe_tiles_per_second:.1f} NFE-tiles/s)")
        emit()

        # (d) CPU vs GPU
        if args.check == "on" or (args.check == "auto" and cuda):
            if not torch.cuda.is_available():
                raise SystemExit("--check on needs CUDA")
            check_nfe = args.check_nfe or min(nfe, 20)
            gpu = device if cuda else torch.device("cuda")
            if args.checkpoint:
                from scorerecon.models.checkpoint import load_score_model

                prior = load_score_model(args.checkpoint)
                label = f"checkpoint {args.checkpoint}"
            else:
                prior, label = headline, f"random-weight '{preset}'"
            ct = ct_task(root, size, args.check_slices, name="check")
            scores = {}
            for dev, prec_ in ((torch.device("cpu"), "fp32"), (gpu, "auto")):
                e = TileEngine(copy.deepcopy(prior), EngineConfig(
                    device=dev, precision=prec_, compile=comp if dev.type == "cuda" else None,
                    batch_size=args.check_slices, noise_device="cpu"))
                r = run_task(e, ct, check_nfe, None, keep=True)
                scores[dev.type] = (psnr(r.outputs["check"].numpy(), ct.truth["check"]), e.policy.name)
            diff = abs(scores["cpu"][0] - scores["cuda"][0])
            emit(f"## (d) CPU vs GPU, same seeds ({label}, CT {args.check_slices} slices {size}^2, DDIM {check_nfe})")
            emit()
            emit("| device | precision | PSNR dB |")
            emit("|---|---|---|")
            for k, (v, pname) in scores.items():
                emit(f"| {k} | {pname} | {v:.3f} |")
            emit(f"\n|dPSNR| = {diff:.3f} dB (target <= 0.1): {'PASS' if diff <= 0.1 else 'FAIL'}")
            emit()
        emit(f"{one_line(str(device))}; total benchmark time {time.perf_counter() - t_start:.0f} s")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
