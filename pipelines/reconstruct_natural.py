"""``scorerecon reconstruct --task sr|deblur|denoise|inpaint|lowlight``: restore a user's degraded photograph.

There is no ground truth here: ``--input`` *is* the measurement -- an image file (PNG, JPEG,
TIFF; read by :mod:`scorerecon.modalities.io.image`, grey repeated to RGB, alpha kept only as
an inpainting mask) or a store ``scorerecon ingest`` made from one (``image (band, y, x)``). The
task's forward model (the operators of :mod:`scorerecon.modalities.natural.degradations`, the
ones ``evaluate`` simulates with) is set from the options, and the task's solver
(:mod:`scorerecon.pipelines.tasks.natural`; default: the registry's, :mod:`.tasks.registry`)
restores the picture under the shipped photo prior:

``sr``       ``--scale 2|4`` (default 4): the input is the bicubic-downsampled image; the output
             is ``scale`` times its size (``cond_sr``, the conditional x4 model, needs ``--scale 4``).
``deblur``   ``--kernel gaussian|motion|FILE.npy`` (15x15 sigma 2, 15 px at 30 degrees, or a 2-D
             kernel, normalised to sum 1) and noise ``--sigma`` (0..255 scale, default 1). The
             operator is circular (FFT) but a photograph is blurred linearly, so the input is
             reflect-padded by the kernel size and its border tapered (:func:`edge_taper`) before
             the solver runs, and the result cropped back: otherwise the mismatch at the wrapped
             border is amplified by the near-exact data step (DiffPIR at 20 NFE on a linearly
             blurred kodim23 crop: 7.2 dB plain, 9.8 dB padded, 36.2 dB padded and tapered;
             ``benchmarks/deblur_boundary.py``, 2026-12-04, 2-core AMD EPYC).
``denoise``  Gaussian noise ``--sigma`` on the 0..255 scale; without it the noise level is
             estimated (scikit-image ``estimate_sigma``, Donoho's wavelet MAD, averaged over
             channels) and recorded. DDRM / DiffPIR / DPS start at the measurement's noise level.
``inpaint``  ``--inpaint-mask FILE``: an image of the input's size whose non-zero pixels are the
             missing ones (the convention of OpenCV / LaMa masks); without it the input's
             transparent pixels (alpha 0) are missing. Missing pixels' values are ignored.
``lowlight`` the dark capture itself; the conditional model ``photos_lowlight``.

``--samples N`` averages N posterior samples and writes their per-pixel std (``std``); the
conditional solvers draw 4 by default (the evaluated ``cond_*`` methods are that mean). ``--crop
N`` restores only the centred ``N x N`` window (of the input).

The output store holds ``image (band, y, x)`` with bands ``R, G, B`` in the input's pixel type
(8-bit in, 8-bit out: rounded from the estimate in [0, 1]; float in, float32 out), so ``scorerecon
export --format png`` writes the restored photograph as it is; ``std`` is float32 in the same
units. Attrs: the provenance every reconstruction carries
(:func:`~scorerecon.pipelines.record.finish_output`: the input file's or store's source sha256,
the prior's sha256, command, versions) plus the degradation model, solver settings, NFE and seed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from scorerecon.pipelines.errors import InputError
from scorerecon.pipelines.options import engine_config, float_range

__all__ = ["add_arguments", "edge_taper", "read_photo", "run_natural"]

KERNELS = ("gaussian", "motion")
#: deblurring's noise sigma (0..255) when --sigma is not given: the evaluated setting (evaluate_natural)
DEBLUR_SIGMA = 1.0
#: below this estimated sigma (0..255) an image is taken as noise-free and denoising refused
MIN_SIGMA = 0.5
#: posterior samples a conditional solver averages by default (the evaluated cond_* methods)
COND_SAMPLES = 4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The natural-image options of ``scorerecon reconstruct`` (``--crop`` is shared with CT)."""
    group = parser.add_argument_group("photographs (sr, deblur, denoise, inpaint, lowlight)")
    group.add_argument("--scale", type=int, choices=(2, 4), default=4, help="sr: upscaling factor (default 4)")
    group.add_argument("--kernel", default="gaussian",
                       help="deblur: gaussian (15x15, sigma 2) | motion (15 px at 30 deg) | a 2-D kernel .npy")
    group.add_argument("--sigma", type=float_range(0, 255), default=None,
                       help="denoise / deblur: noise sigma on the 0..255 scale (default: estimated / 1)")
    group.add_argument("--inpaint-mask", type=Path, default=None,
                       help="inpaint: image whose non-zero pixels are missing (default: the input's alpha == 0)")


def read_photo(path: Path) -> tuple[np.ndarray, np.ndarray | None, Any, list[tuple[Path, str]], list[Path]]:
    """The degraded picture ``(H, W, 3)`` in ``[0, 1]``, its alpha (or ``None``), its pixel dtype,
    the stores read (for provenance) and the image files read directly."""
    from scorerecon.modalities.io.image import read
    from scorerecon.modalities.io.store import open_store
    from scorerecon.modalities.natural.datasets import rgb_from_dataset

    if path.is_dir():
        ds, stores, files = open_store(path), [(path, "/")], []
    elif path.is_file():
        ds, stores, files = read([path])["/"], [], [path]
    else:
        raise InputError(path, "input not found (an image file or an image store)")
    rgb = rgb_from_dataset(ds, path)
    bands = [str(b) for b in ds["band"].values]
    alpha = None
    if "A" in bands:
        alpha = np.asarray(ds["image"].isel(band=bands.index("A")).values)
    return rgb, alpha, ds["image"].dtype, stores, files


def _missing_pixels(args: argparse.Namespace, shape: tuple[int, int], alpha: np.ndarray | None) -> np.ndarray:
    """``True`` where the picture has no value: the mask file's non-zero pixels, else alpha == 0."""
    if args.inpaint_mask is not None:
        from scorerecon.modalities.io.image import read

        if not args.inpaint_mask.is_file():
            raise InputError(args.inpaint_mask, "inpainting mask not found")
        mask = np.asarray(read([args.inpaint_mask])["/"]["image"].values)
        if mask.shape[-2:] != shape:
            raise InputError(args.inpaint_mask, f"mask is {mask.shape[-2]}x{mask.shape[-1]}, the input "
                                                f"{shape[0]}x{shape[1]}")
        return (mask != 0).any(axis=0)
    if alpha is None:
        raise InputError(args.input, "--task inpaint needs --inpaint-mask FILE (non-zero = missing) or an input "
                                     "whose transparent pixels are the missing ones")
    return alpha == 0


def _kernel(text: str) -> tuple[np.ndarray, str]:
    from scorerecon.modalities.natural import degradations as deg

    if text == "gaussian":
        return deg.gaussian_kernel(15, 2.0), "gaussian 15x15, sigma 2"
    if text == "motion":
        return deg.motion_kernel(15, 30.0), "motion, 15 px at 30 degrees"
    path = Path(text)
    if path.suffix.lower() != ".npy" or not path.is_file():
        raise InputError(path, f"--kernel must be {' or '.join(KERNELS)} or an existing 2-D kernel .npy")
    try:
        kernel = np.load(path, allow_pickle=False).astype(np.float64)
    except (OSError, ValueError) as exc:
        raise InputError(path, f"cannot read the kernel: {exc}") from None
    if kernel.ndim != 2 or not np.isfinite(kernel).all() or kernel.sum() <= 0:
        raise InputError(path, "the kernel must be a finite 2-D array with a positive sum")
    return kernel / kernel.sum(), f"{path.name} ({kernel.shape[0]}x{kernel.shape[1]}, normalised)"


def _estimate_sigma(rgb: np.ndarray, path: Path) -> float:
    """The image's Gaussian noise sigma on the 0..255 scale (scikit-image's wavelet MAD estimate)."""
    from skimage.restoration import estimate_sigma

    sigma = 255.0 * float(estimate_sigma(rgb, channel_axis=-1, average_sigmas=True))
    if not sigma >= MIN_SIGMA:
        raise InputError(path, f"no noise to remove (estimated sigma {sigma:.2f}/255); give --sigma to denoise anyway")
    return sigma


def _centre_crop(rgb: np.ndarray, alpha: np.ndarray | None, crop: int | None, path: Path
                 ) -> tuple[np.ndarray, np.ndarray | None, list[int]]:
    h, w = rgb.shape[:2]
    if not crop:
        return rgb, alpha, [0, 0]
    if crop > min(h, w):
        raise InputError(path, f"--crop {crop} is larger than the image ({h}x{w})")
    r0, c0 = (h - crop) // 2, (w - crop) // 2
    window = (slice(r0, r0 + crop), slice(c0, c0 + crop))
    return rgb[window], None if alpha is None else alpha[window], [r0, c0]


def _chw(x: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))[None]).float()


def _reflect(x: np.ndarray, pad: int) -> np.ndarray:
    return np.pad(x, ((pad, pad), (pad, pad), (0, 0)), mode="symmetric")


def edge_taper(y: np.ndarray, operator: Any, width: int) -> np.ndarray:
    """``w y + (1 - w) A y``: ``y`` ``(H, W, C)`` blended into its own circular blur over a raised-cosine
    ramp ``w`` of ``width`` pixels at every border (MATLAB's ``edgetaper``, with a cosine window
    instead of the PSF's autocorrelation), so the wrapped border is what the circular operator
    ``A`` produces. Hand-written: neither scikit-image nor SciPy has an edge taper."""
    import torch

    def window(n: int) -> np.ndarray:
        out = np.ones(n)
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(width) / width)
        out[:width], out[n - width:] = ramp, ramp[::-1]
        return out

    weight = np.outer(window(y.shape[0]), window(y.shape[1]))[..., None]
    blurred = operator.A(torch.from_numpy(np.ascontiguousarray(y.transpose(2, 0, 1))[None]).double())
    return (weight * y + (1.0 - weight) * blurred[0].numpy().transpose(1, 2, 0)).astype(np.float32)


def _zero_shot(args: argparse.Namespace, model: Any, rgb: np.ndarray, alpha: np.ndarray | None
               ) -> tuple[Any, Any, dict[str, Any]]:
    """Mean ``(1, 3, H, W)`` in [0, 1], std (or ``None``) and the record of a zero-shot solver."""
    import torch

    from scorerecon.modalities.natural import degradations as deg
    from scorerecon.pipelines.tasks.natural import natural_problem, restore_zero_shot

    task, h, w = args.task, rgb.shape[0], rgb.shape[1]
    crop: tuple[slice, slice] | None = None
    info: dict[str, Any] = {}
    sigma = 0.0
    if task == "sr":
        y = _chw(rgb)
        op = deg.BicubicDown((h * args.scale, w * args.scale), args.scale)
        info["degradation"] = f"bicubic x{args.scale} (Pillow kernel, antialiased), noise-free"
    elif task == "deblur":
        kernel, described = _kernel(args.kernel)
        sigma = DEBLUR_SIGMA if args.sigma is None else float(args.sigma)
        pad = max(kernel.shape)
        padded = _reflect(rgb, pad)
        op = deg.Blur(kernel, padded.shape[:2])
        y = _chw(edge_taper(padded, op, pad))
        crop = (slice(pad, pad + h), slice(pad, pad + w))
        info["degradation"] = f"{described} blur, noise sigma {sigma:g}/255 (circular operator; input reflect-" \
                              f"padded by {pad} pixels and edge-tapered, result cropped back)"
    elif task == "denoise":
        y = _chw(rgb)
        op = deg.Identity((h, w))
        if args.sigma is None:
            sigma = _estimate_sigma(rgb, args.input)
            info["sigma_estimated"] = "scikit-image estimate_sigma (wavelet MAD), averaged over channels"
        else:
            sigma = float(args.sigma)
        if not sigma > 0:
            raise InputError(None, "--task denoise needs --sigma > 0")
        info["degradation"] = f"Gaussian noise sigma {sigma:.3g}/255"
    else:  # inpaint
        missing = _missing_pixels(args, (h, w), alpha)
        if missing.all() or not missing.any():
            raise InputError(args.inpaint_mask or args.input, "the mask marks " + ("every" if missing.all() else "no")
                             + " pixel as missing")
        observed = (~missing).astype(np.float32)
        op = deg.Inpainting(observed)
        y = op.A(_chw(rgb))
        info["degradation"] = "missing pixels: " + ("the mask file's non-zero pixels" if args.inpaint_mask
                                                      else "the input's transparent pixels (alpha 0)")
        info["missing_fraction"] = round(float(missing.mean()), 6)
    info["noise_sigma_255"] = sigma
    problem = natural_problem(y, op, model.card, sigma)
    how = {"start": "measurement"} if task == "denoise" and args.solver in ("ddrm", "prox", "dps") else {}
    with torch.no_grad():
        rec = restore_zero_shot(problem, model, args.solver, nfe=args.nfe, seed=args.seed, device=args.device,
                                n_samples=args.samples, engine=engine_config(args), **how)
    mean, std = rec.image.detach().cpu(), None if rec.std is None else rec.std.detach().cpu()
    if crop is not None:
        mean = mean[..., crop[0], crop[1]]
        std = None if std is None else std[..., crop[0], crop[1]]
    info.update(solver=args.solver, solver_settings=rec.spec, nfe=rec.nfe, seeds=rec.seeds,
                sampling_seconds=round(rec.seconds, 3), execution=rec.execution)
    return mean, std, info


def _conditional(args: argparse.Namespace, model: Any, rgb: np.ndarray) -> tuple[Any, Any, dict[str, Any]]:
    """Mean and std of ``args.samples`` samples of a conditional model (one call per sample, seed + k)."""
    import torch

    from scorerecon.modalities.natural import degradations as deg
    from scorerecon.modalities.natural.datasets import lowlight_condition
    from scorerecon.pipelines.evaluate_natural import COND_ETA
    from scorerecon.pipelines.tasks import downsampling_factor
    from scorerecon.pipelines.tasks.natural import restore_conditional

    h, w = rgb.shape[:2]
    if args.task == "sr":
        if args.scale != 4:
            raise InputError(None, f"{args.solver} is the x4 model: use --scale 4 or a zero-shot solver")
        cond = deg.bicubic_resize(_chw(rgb).double(), (4 * h, 4 * w)).float()
        info = {"degradation": "bicubic x4 (Pillow kernel, antialiased); condition: the bicubic upsampling"}
    else:  # lowlight
        gain = float(model.card["data"].get("cond_gain", 1.0))
        cond = _chw(lowlight_condition(rgb, gain))
        info = {"degradation": "low light (exposure, gamma, Poisson-Gaussian noise)",
                "condition": f"clip({gain:g} x input)"}
    # the conditional UNet needs sides divisible by its downsampling: reflect-pad, crop back
    multiple = downsampling_factor(model)
    size = tuple(int(s) for s in cond.shape[-2:])
    pad = [(-s) % multiple for s in size]
    if any(pad):
        cond = torch.nn.functional.pad(cond, (0, pad[1], 0, pad[0]), mode="replicate")
    draws, nfe, seconds = [], 0, 0.0
    with torch.no_grad():
        for k in range(args.samples):
            est, nfe, secs = restore_conditional(model, cond, nfe=args.nfe, seed=args.seed + k, n_samples=1,
                                                 eta=COND_ETA, device=args.device, engine=engine_config(args))
            draws.append(est[..., :size[0], :size[1]])
            seconds += secs
    stack = torch.stack(draws)
    std = stack.std(0) if args.samples > 1 else None
    info.update(solver=args.solver, solver_settings={"sampler": "ddim", "eta": COND_ETA}, nfe=nfe,
                seeds=[args.seed + k for k in range(args.samples)], sampling_seconds=round(seconds, 3))
    return stack.mean(0), std, info


def _to_dtype(x: np.ndarray, dtype: Any) -> np.ndarray:
    """``x`` in [0, 1] in the input's pixel type (integers: rounded, scaled by the type's maximum)."""
    if np.issubdtype(dtype, np.integer):
        top = float(np.iinfo(dtype).max)
        return np.rint(np.clip(x, 0.0, 1.0) * top).astype(dtype)
    return x.astype(np.float32)


def run_natural(args: argparse.Namespace) -> int:
    """``scorerecon reconstruct`` for a photo task (module docstring); ``args.solver``/``nfe`` already defaulted."""
    import xarray as xr

    from scorerecon.hashing import describe_sources
    from scorerecon.modalities.io.outputs import check_output
    from scorerecon.modalities.io.store import write_store
    from scorerecon.models.checkpoint import load_score_model
    from scorerecon.pipelines.record import finish_output
    from scorerecon.pipelines.tasks.registry import get_task

    task = get_task(args.task)
    conditional = args.solver in task.conditional
    if args.samples is None:  # conditional models: the mean of 4, as evaluated; zero-shot: one sample
        args.samples = COND_SAMPLES if conditional else 1
    if args.solver.startswith("tweedie") and args.samples != 1:
        raise InputError(None, f"{args.solver} is deterministic (one estimate, no sampling): --samples must be 1")
    if args.task != "inpaint" and args.inpaint_mask is not None:
        raise InputError(args.inpaint_mask, f"--inpaint-mask is an inpaint option, not one of --task {args.task}")
    check_output(args.output, "dir", args.overwrite, protect=[args.input])
    rgb, alpha, dtype, stores, files = read_photo(args.input)
    rgb, alpha, origin = _centre_crop(rgb, alpha, args.crop, args.input)
    model = load_score_model(task.prior_for(args.solver), device=args.device) if args.checkpoint is None \
        else load_score_model(args.checkpoint, device=args.device)
    model.eval()
    start = time.perf_counter()
    if conditional:
        mean, std, info = _conditional(args, model, rgb)
    else:
        mean, std, info = _zero_shot(args, model, rgb, alpha)
    seconds = time.perf_counter() - start
    image = mean[0].clamp(0, 1).numpy()
    data = {"image": (("band", "y", "x"), _to_dtype(image, dtype))}
    if std is not None:
        scale = float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else 1.0
        data["std"] = (("band", "y", "x"), (std[0].numpy() * scale).astype(np.float32))
    ds = xr.Dataset(data, coords={"band": np.array(["R", "G", "B"], dtype=object)})
    ds["image"].attrs["units"] = f"{np.dtype(dtype).name} pixel values of the input" if \
        np.issubdtype(dtype, np.integer) else "RGB in [0, 1]"
    if std is not None:
        ds["std"].attrs["description"] = f"per-pixel std over {args.samples} posterior samples, image units"
    info.update(samples=args.samples, seed=args.seed, nfe_budget=args.nfe, crop_origin=origin,
                input_shape=list(rgb.shape[:2]), output_shape=list(image.shape[-2:]))
    ds = finish_output(ds, task=args.task, args=args, model=model, checkpoint=model.checkpoint_path, inputs=stores,
                       info=info, seconds=seconds, reader="scorerecon.pipelines.reconstruct_natural",
                       georeferenced=False)
    if files:  # an image file read directly: its own bytes are the source
        ds.attrs["source_files"] = describe_sources(files)
    write_store(ds, args.output, overwrite=args.overwrite, protect=[args.input])
    if not args.quiet:
        print(f"wrote {args.output}: {args.task}, {image.shape[-2]}x{image.shape[-1]} RGB, {args.solver}, "
              f"{info['nfe']} NFE x {args.samples} sample(s), {seconds:.1f} s")
    return 0
