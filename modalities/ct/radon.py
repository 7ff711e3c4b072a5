"""Parallel-beam Radon transform in torch with an exact adjoint: batched, differentiable, CPU/GPU.

Forward model (ray-driven, bilinear; the discretisation of scikit-image's ``radon``): the line
integral for view ``theta`` and detector position ``s`` is the sum of the image, bilinearly
interpolated (zero outside the image), at unit steps ``t_k = k - n_t // 2`` along the ray::

    p(theta, s) = sum_k  x_bilinear(col = c + s cos(theta) + t_k sin(theta),
                                    row = c - s sin(theta) + t_k cos(theta)),      c = N // 2

(coordinate convention in :mod:`.geometry`). This is exactly what ``skimage.transform.radon``
computes -- it rotates the image with bilinear ``warp`` and sums the rows -- so the two agree to
float precision on the same geometry (the tests check it).

How it is computed -- two backends with identical weights, both with an exact adjoint:

* ``"sparse"``: the system matrix (four bilinear weights per ray sample, duplicates summed) is
  built once per geometry, device and dtype and cached as CSR together with its transpose;
  ``A x = M x`` and ``A^H y = M^T y`` are sparse mat-muls (MKL on CPU, cuSPARSE on CUDA). The
  adjoint is exact by construction. ~50x faster than ``"grid"`` on the CPU; memory ~12 bytes
  per non-zero, ``~2.5 N^2 n_views`` non-zeros (70 MB at 128^2 / 180 views, 280 MB at 256^2).
* ``"grid"``: matrix-free, all views at once (in chunks bounding memory) with
  ``torch.nn.functional.grid_sample`` (bilinear, ``padding_mode="zeros"``,
  ``align_corners=True``), the image batch riding in grid_sample's channel axis; the adjoint is
  ``grid_sample``'s own input-gradient kernel (``aten::grid_sampler_2d_backward``), which scatters
  every sample back with the same four bilinear weights -- the exact transpose again. Memory is
  ``O(chunk)``: the choice for large images on a GPU.

``backend="auto"`` (default) takes ``"sparse"`` when the estimated matrix stays under ~400 MB,
else ``"grid"``. ``<A x, y> = <x, A^H y>`` holds to float rounding with either. ``A`` and ``AH``
are autograd functions whose backwards are each other, so DPS-style guidance can differentiate
through both.

Written here rather than imported because skimage's ``radon`` is numpy-only, single-image,
CPU-only and has no adjoint; ASTRA / tomosipo / torch-radon are not dependencies (and torch-radon
is unmaintained for current torch).
"""

from __future__ import annotations

import warnings

import torch
from torch.nn import functional as nnf

from scorerecon.models.guidance import LinearOperator

from .geometry import ParallelBeamGeometry

Tensor = torch.Tensor

__all__ = ["ParallelBeamProjector"]

# elements of one grid_sample output chunk (n_views_chunk * batch * n_t * n_det); 2^24 floats = 64 MB
_CHUNK_ELEMS = 1 << 24
# grids up to this many bytes are cached per (device, dtype)
_GRID_CACHE_BYTES = 128 << 20
# "auto" uses the sparse backend up to this many estimated non-zeros (~12 bytes each, x2 for M^T)
_SPARSE_MAX_NNZ = 1 << 24
# system matrices (float64, CPU) shared by every projector with the same geometry
_MATRIX_CACHE: dict[tuple, tuple[Tensor, Tensor]] = {}


class _Forward(torch.autograd.Function):
    """``A`` as an autograd function whose backward is ``A^H``."""

    @staticmethod
    def forward(ctx, x: Tensor, op: ParallelBeamProjector) -> Tensor:  # type: ignore[override]
        ctx.op = op
        return op._forward(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return ctx.op.AH(grad), None


class _Adjoint(torch.autograd.Function):
    """``A^H`` as an autograd function whose backward is ``A`` (both linear)."""

    @staticmethod
    def forward(ctx, y: Tensor, op: ParallelBeamProjector) -> Tensor:  # type: ignore[override]
        ctx.op = op
        return op._adjoint(y)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return ctx.op.A(grad), None


class ParallelBeamProjector(LinearOperator):
    """Radon transform ``A``: images ``(B, C, N, N)`` -> sinograms ``(B, C, n_angles, n_det)``.

    ``A`` / ``AH`` / ``normal`` follow :class:`~scorerecon.models.guidance.LinearOperator` (real
    tensors, any float dtype and device; the geometry's sample grid is built on the input's device).
    ``n_samples`` is the number of unit steps along each ray (default ``n_det``: covers the
    square's diagonal). Units: per-pixel attenuation in, dimensionless line integrals out.
    """

    def __init__(self, geometry: ParallelBeamGeometry, n_samples: int | None = None, backend: str = "auto") -> None:
        if backend not in ("auto", "sparse", "grid"):
            raise ValueError("backend must be 'auto', 'sparse' or 'grid'")
        self.geometry = geometry
        self.n_samples = int(geometry.n_det if n_samples is None else n_samples)
        if backend == "auto":
            est = 2.5 * geometry.image_size**2 * geometry.n_angles
            backend = "sparse" if est <= _SPARSE_MAX_NNZ else "grid"
        self.backend = backend
        self._grid_cache: dict[tuple, Tensor] = {}
        self._matrix_cache: dict[tuple, tuple[Tensor, Tensor]] = {}
        self._norm: float | None = None

    # --- geometry ---------------------------------------------------------------------------
    def _grid(self, device: torch.device, dtype: torch.dtype) -> Tensor:
        """Sampling grid ``(n_angles, n_t, n_det, 2)`` in grid_sample's normalised ``(x, y)``."""
        key = (str(device), dtype)
        if key in self._grid_cache:
            return self._grid_cache[key]
        g = self.geometry
        n = g.image_size
        c = n // 2
        theta = g.angles_rad(device=device)[:, None, None]
        s = g.detector_positions(device=device)[None, None, :]
        t = (torch.arange(self.n_samples, device=device, dtype=torch.float64) - self.n_samples // 2)[None, :, None]
        cos, sin = torch.cos(theta), torch.sin(theta)
        col = c + s * cos + t * sin
        row = c - s * sin + t * cos
        scale = 2.0 / (n - 1)
        grid = torch.stack([col * scale - 1.0, row * scale - 1.0], dim=-1).to(dtype)
        if grid.numel() * grid.element_size() <= _GRID_CACHE_BYTES:
            self._grid_cache[key] = grid
        return grid

    def matrix(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
        """The system matrix ``M`` ``(n_angles * n_det, N * N)`` and ``M^T`` as CSR (cached).

        Rows are rays ``angle * n_det + bin``, columns pixels ``row * N + col``; the entries are
        the bilinear weights of every unit-step ray sample.
        """
        device = torch.device(device)
        key = (str(device), dtype)
        if key not in self._matrix_cache:
            cpu = _MATRIX_CACHE.get((self.geometry, self.n_samples))
            if cpu is None:
                cpu = self._build_matrix()
                _MATRIX_CACHE[(self.geometry, self.n_samples)] = cpu
            self._matrix_cache[key] = tuple(m.to(dtype).to(device) for m in cpu)  # type: ignore[assignment]
        return self._matrix_cache[key]

    def _build_matrix(self) -> tuple[Tensor, Tensor]:
        """CSR ``M`` and ``M^T`` in float64 on the CPU.

        Entries are laid out ray-major (ray, sample, corner), so ``M``'s rows come out sorted and
        need no coalescing (samples of one ray that share a pixel stay separate entries; sparse
        mat-muls sum them, which is the same linear map). ``M^T`` is one stable sort by pixel.
        """
        g = self.geometry
        n, n_det, n_t = g.image_size, int(g.n_det), self.n_samples
        rows, cols, vals = [], [], []
        step = max(1, (1 << 21) // max(1, n_t * n_det))
        t = (torch.arange(n_t, dtype=torch.float64) - n_t // 2)[None, None, :]
        s = g.detector_positions()[None, :, None]
        theta_all = g.angles_rad()
        for a0 in range(0, g.n_angles, step):
            theta = theta_all[a0:a0 + step, None, None]
            cos, sin = torch.cos(theta), torch.sin(theta)
            col = n // 2 + s * cos + t * sin  # (views, n_det, n_t): ray-major
            row = n // 2 - s * sin + t * cos
            ray = (torch.arange(a0, a0 + theta.shape[0])[:, None, None] * n_det
                   + torch.arange(n_det)[None, :, None]).expand_as(col)
            c0, r0 = torch.floor(col), torch.floor(row)
            wx, wy = col - c0, row - r0
            c0, r0 = c0.long(), r0.long()
            corners = [(c0, r0, (1 - wx) * (1 - wy)), (c0 + 1, r0, wx * (1 - wy)),
                       (c0, r0 + 1, (1 - wx) * wy), (c0 + 1, r0 + 1, wx * wy)]
            cc = torch.stack([c[0] for c in corners], dim=-1)  # (..., 4): keeps ray-major order
            rr = torch.stack([c[1] for c in corners], dim=-1)
            ww = torch.stack([c[2] for c in corners], dim=-1)
            ok = (cc >= 0) & (cc < n) & (rr >= 0) & (rr < n) & (ww > 0)
            rows.append(ray[..., None].expand_as(cc)[ok])
            cols.append((rr * n + cc)[ok])
            vals.append(ww[ok])
        row_idx, col_idx, val = torch.cat(rows), torch.cat(cols), torch.cat(vals)
        n_rays, n_pix = g.n_angles * n_det, n * n

        def csr(major: Tensor, minor: Tensor, v: Tensor, shape: tuple[int, int]) -> Tensor:
            crow = torch.zeros(shape[0] + 1, dtype=torch.int64)
            crow[1:] = torch.cumsum(torch.bincount(major, minlength=shape[0]), 0)
            with warnings.catch_warnings():  # "sparse CSR support is in beta": we rely only on mm
                warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
                return torch.sparse_csr_tensor(crow, minor, v, shape, check_invariants=False)

        m = csr(row_idx, col_idx, val, (n_rays, n_pix))
        order = torch.sort(col_idx, stable=True).indices
        mt = csr(col_idx[order], row_idx[order], val[order], (n_pix, n_rays))
        return m, mt

    def _chunk(self, batch: int) -> int:
        per_view = max(1, batch * self.n_samples * int(self.geometry.n_det))
        return max(1, min(self.geometry.n_angles, _CHUNK_ELEMS // per_view))

    def _check(self, x: Tensor) -> tuple[int, int]:
        n = self.geometry.image_size
        if x.ndim != 4 or x.shape[-2:] != (n, n):
            raise ValueError(f"expected images (B, C, {n}, {n}), got {tuple(x.shape)}")
        if x.is_complex():
            raise TypeError("the Radon transform acts on real images")
        return int(x.shape[0]), int(x.shape[1])

    # --- the operator -----------------------------------------------------------------------
    def A(self, x: Tensor) -> Tensor:
        """Forward projection; differentiable, its backward is :meth:`AH`."""
        self._check(x)
        if not x.is_floating_point():
            x = x.float()
        return _Forward.apply(x, self)

    def _forward(self, x: Tensor) -> Tensor:
        b, c = self._check(x)
        n, g_ = self.geometry.image_size, self.geometry
        if self.backend == "sparse":
            m, _ = self.matrix(x.device, x.dtype)
            out = torch.sparse.mm(m, x.reshape(b * c, n * n).t().contiguous()).t()
            return out.reshape(b, c, g_.n_angles, int(g_.n_det))
        grid = self._grid(x.device, x.dtype)
        bc = b * c
        inp = x.reshape(1, bc, n, n)
        step = self._chunk(bc)
        views = []
        for a0 in range(0, self.geometry.n_angles, step):
            g = grid[a0:a0 + step]
            out = nnf.grid_sample(inp.expand(g.shape[0], bc, n, n), g, mode="bilinear", padding_mode="zeros",
                                align_corners=True)  # (views, bc, n_t, n_det)
            views.append(out.sum(dim=2))
        sino = torch.cat(views, dim=0)  # (n_angles, bc, n_det)
        return sino.permute(1, 0, 2).reshape(b, c, self.geometry.n_angles, int(self.geometry.n_det))

    def AH(self, y: Tensor) -> Tensor:
        """Exact adjoint (back-projection transpose of :meth:`A`); differentiable, backward = ``A``."""
        return _Adjoint.apply(y, self)

    def _adjoint(self, y: Tensor) -> Tensor:
        g_ = self.geometry
        if y.ndim != 4 or tuple(y.shape[-2:]) != g_.sinogram_shape:
            raise ValueError(f"expected sinograms (B, C, {g_.n_angles}, {g_.n_det}), got {tuple(y.shape)}")
        if not y.is_floating_point():
            y = y.float()
        b, c = int(y.shape[0]), int(y.shape[1])
        n, bc = g_.image_size, b * c
        if self.backend == "sparse":
            _, mt = self.matrix(y.device, y.dtype)
            out = torch.sparse.mm(mt, y.reshape(bc, g_.n_angles * int(g_.n_det)).t().contiguous()).t()
            return out.reshape(b, c, n, n)
        grid = self._grid(y.device, y.dtype)
        yv = y.reshape(bc, g_.n_angles, int(g_.n_det)).permute(1, 0, 2)  # (n_angles, bc, n_det)
        step = self._chunk(bc)
        out = torch.zeros((bc, n, n), device=y.device, dtype=y.dtype)
        shape_ref = torch.zeros((), device=y.device, dtype=y.dtype)
        for a0 in range(0, g_.n_angles, step):
            g = grid[a0:a0 + step]
            grad_out = yv[a0:a0 + step, :, None, :].expand(g.shape[0], bc, self.n_samples, int(g_.n_det))
            grad_in, _ = torch.ops.aten.grid_sampler_2d_backward(
                grad_out.contiguous(), shape_ref.expand(g.shape[0], bc, n, n), g, 0, 0, True, [True, False])
            out += grad_in.sum(dim=0)
        return out.reshape(b, c, n, n)

    def normal(self, x: Tensor) -> Tensor:
        return self.AH(self.A(x))

    def operator_norm(self, n_iter: int = 30, device: torch.device | str = "cpu", seed: int = 0) -> float:
        """``||A||_2`` by power iteration on ``A^H A`` (float64, cached)."""
        if self._norm is None:
            n = self.geometry.image_size
            gen = torch.Generator().manual_seed(seed)
            v = torch.randn((1, 1, n, n), generator=gen, dtype=torch.float64).to(device)
            lam = 0.0
            for _ in range(n_iter):
                v = v / v.norm()
                w = self.normal(v)
                lam = float((v * w).sum())
                v = w
            self._norm = lam ** 0.5
        return self._norm
