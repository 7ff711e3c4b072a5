"""Wall time of each sampler against the bare network at the same NFE.

``overhead ratio = sampler seconds / bare-network seconds``, where the bare-network seconds are
the summed durations of the sampler's own ``NFE`` network forwards, each timed in place (a thin
wrapper around the network, synchronised on GPU). That is ``NFE x bare forward time`` measured
under the same machine load as the sampler itself: on a shared, busy CPU a separately timed bare
forward varied 10x between runs here, which made a separately timed denominator meaningless.
1.0 means the sampler costs nothing beyond its network calls; guidance rows show what a data
term adds (a projection or CG data step is a few mask products here; DPS adds a backward pass
through the network per step). The header also gives a standalone median bare forward.

The network is a small MONAI ``DiffusionModelUNet`` (no level attention; its middle block
always has self-attention) wrapped in :class:`NetworkScoreModel`; weights are random, which
does not matter for timing. Run::

    python benchmarks/sampler_overhead.py --size 64 --batch 4 --nfe 20 --device auto

Prints a markdown table and the hardware it ran on.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import time

import torch

from scorerecon.models.guidance import (
    ConjugateGradientDataStep,
    DPSGuidance,
    Guidance,
    MaskedTransformOperator,
    MeasurementProjection,
)
from scorerecon.models.samplers import sample
from scorerecon.models.score_model import TIME_SCALE, NetworkScoreModel
from scorerecon.models.sde import SDE, VESDE, VPSDE


def hardware(device: torch.device) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as fh:
                name = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
        except (OSError, StopIteration):
            pass
        name += f", {torch.get_num_threads()} torch threads"
    return (f"{name}; torch {torch.__version__}; python {platform.python_version()}; "
            f"{dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_forward_seconds(net: torch.nn.Module, x: torch.Tensor, repeats: int, warmup: int = 0) -> float:
    """Mean seconds of one bare ``net(x, t)`` forward (no sampler around it)."""
    t = torch.full((x.shape[0],), 0.5 * TIME_SCALE, device=x.device)
    with torch.no_grad():
        for _ in range(warmup):
            net(x, t)
        sync(x.device)
        start = time.perf_counter()
        for _ in range(repeats):
            net(x, t)
        sync(x.device)
    return (time.perf_counter() - start) / max(repeats, 1)


class TimedNetwork(torch.nn.Module):
    """Forwards to ``net`` and accumulates the wall time of each call."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net, self.seconds, self.calls = net, 0.0, 0

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        sync(x.device)
        start = time.perf_counter()
        out = self.net(x, t)
        sync(x.device)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--nfe", type=int, default=20)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))

    from monai.networks.nets import DiffusionModelUNet

    torch.manual_seed(0)
    net = DiffusionModelUNet(spatial_dims=2, in_channels=1, out_channels=1, channels=(16, 32, 64),
                             attention_levels=(False, False, False), num_res_blocks=1,
                             norm_num_groups=8).to(device).eval()
    n_params = sum(p.numel() for p in net.parameters())
    shape = (args.batch, 1, args.size, args.size)
    x = torch.randn(shape, device=device)
    bare_forward_seconds(net, x, repeats=0, warmup=2)
    standalone = sorted(bare_forward_seconds(net, x, repeats=1) for _ in range(5))[2]

    ve, vp = VESDE(), VPSDE()
    # a VP ladder needs N > beta_max = 20 rungs, so the discretisation-based samplers run on VE
    mask = (torch.rand(1, 1, args.size, args.size, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    op = MaskedTransformOperator(mask.to(device))
    y = op.A(torch.randn(1, 1, args.size, args.size, device=device))
    n = args.nfe
    rows: list[tuple[str, SDE, str, int, dict, Guidance | None]] = [
        ("em", vp, "em", n, {}, None),
        ("rd", ve, "rd", n, {}, None),
        ("ddpm (SMLD ancestral)", ve, "ddpm", n, {}, None),
        ("pc (1 corrector)", ve, "pc", n, {"n_corrector": 1}, None),
        ("ncsn", ve, "ncsn", n, {}, None),
        ("annealed_langevin", ve, "annealed_langevin", n, {}, None),
        ("ode rk4", vp, "ode", n, {"method": "rk4"}, None),
        ("ddim eta=0", vp, "ddim", n, {"eta": 0.0}, None),
        ("ddim eta=1", vp, "ddim", n, {"eta": 1.0}, None),
        ("ode heun", vp, "ode", n, {"method": "heun"}, None),
        ("pc + projection (Song 2022)", ve, "pc", n, {}, MeasurementProjection(op, y)),
        ("ddim + CG x5 (DDS)", vp, "ddim", n, {}, ConjugateGradientDataStep(op, y, 5, 1e-2)),
        ("em + DPS", vp, "em", n, {}, DPSGuidance(op, y, 0.1)),
    ]
    lines = ["| sampler | NFE | seconds | bare-network seconds | overhead ratio |", "|---|---|---|---|---|"]
    for label, sde, name, nfe, opts, guidance in rows:
        timed = TimedNetwork(net)
        model = NetworkScoreModel(timed, sde, "eps").eval()
        res = sample(model, shape, name, nfe=nfe, seed=0, device=device, guidance=guidance, **opts)
        assert timed.calls == res.nfe, (timed.calls, res.nfe)
        bare_total = timed.seconds
        lines.append(f"| {label} | {res.nfe} | {res.seconds:.3f} | {bare_total:.3f} | {res.seconds / bare_total:.2f} |")
    print(f"Sampler overhead: batch {args.batch}, {args.size}x{args.size}, MONAI DiffusionModelUNet "
          f"channels=(16,32,64), {n_params / 1e6:.2f} M parameters, fp32, eps-parametrised, random weights; "
          f"standalone bare forward (median of 5) {standalone * 1e3:.1f} ms")
    print()
    print("\n".join(lines))
    print()
    print(f"Hardware: {hardware(device)}")


if __name__ == "__main__":
    main()
