"""Ingest throughput against a raw read of the same bytes, and ingest's peak memory.

For each size (GB) and format (NIfTI .nii, DICOM series), a synthetic int16 CT-like volume
(512 x 512 x N; smooth anatomy-like structure plus noise, so compression is realistic) is written
slab by slab, then:

* raw read: every source byte read sequentially in 8 MiB blocks (the floor any reader pays),
  from storage (the sources' pages evicted from the page cache first, ``posix_fadvise
  DONTNEED``) and again from the page cache (a memory copy);
* raw copy: the same bytes read from storage and written to new files beside the store, in 8 MiB
  blocks (what any ingest that writes its input's size back to the same disk pays; the 2-core
  development machine's disk writes ~0.4 GB/s sustained against ~1.5-2 GB/s reads);
* ingest:  ``scorerecon ingest SRC -o STORE.zarr --compression C`` in a fresh process (start-up,
  parse, sha256 of every source, chunk, compress, write Zarr v3, atomic rename), with the
  sources evicted first like the cold read, timed end to end; peak RSS from ``wait4``.

The ratio that matters is ingest against the read from storage: both then start from the same
place (bytes on disk). Prints a markdown table.

    python benchmarks/ingest.py --sizes 1 4 --formats nifti dicom --compression lz4 none
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from scorerecon.pipelines import hardware

SLICE = 512
SLAB = 64


def synthetic_slab(z0: int, nz: int, rng: np.random.Generator) -> np.ndarray:
    """CT-like int16 slices (z, y, x): an ellipsoidal 'head' of soft tissue and bone plus noise."""
    yy, xx = np.mgrid[-1:1:SLICE * 1j, -1:1:SLICE * 1j]
    out = np.empty((nz, SLICE, SLICE), dtype=np.int16)
    for k in range(nz):
        phase = 0.3 * np.sin((z0 + k) / 150.0)
        r = np.sqrt((xx / (0.8 + 0.05 * phase)) ** 2 + (yy / 0.9) ** 2)
        img = np.where(r < 1.0, 40.0, -1000.0) + np.where((r > 0.9) & (r < 1.0), 1200.0, 0.0)
        out[k] = (img + rng.normal(0, 20, img.shape)).astype(np.int16)
    return out


def write_nifti(path: Path, nz: int) -> list[Path]:
    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_data_dtype(np.int16)
    header.set_data_shape((SLICE, SLICE, nz))
    header.set_zooms((0.5, 0.5, 0.625))
    header.set_sform(np.diag([0.5, 0.5, 0.625, 1.0]), code=1)
    header.set_qform(np.diag([0.5, 0.5, 0.625, 1.0]), code=1)
    rng = np.random.default_rng(0)
    with open(path, "wb") as handle:
        header.write_to(handle)
        handle.write(b"\0" * (int(header["vox_offset"]) - handle.tell()))
        for z0 in range(0, nz, SLAB):
            # (z, y, x) C-order bytes are NIfTI's (x, y, z) Fortran order
            handle.write(synthetic_slab(z0, min(SLAB, nz - z0), rng).tobytes())
    return [path]


def write_dicom_series(folder: Path, nz: int) -> list[Path]:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    rng = np.random.default_rng(0)
    paths = []
    for z0 in range(0, nz, SLAB):
        slab = synthetic_slab(z0, min(SLAB, nz - z0), rng)
        for k, pixels in enumerate(slab):
            index = z0 + k
            ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
            ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
            ds.Modality, ds.PatientID, ds.PatientName = "CT", "BENCH", "Bench^Synthetic"
            ds.InstanceNumber = index + 1
            ds.ImagePositionPatient = [-128.0, -128.0, 0.625 * index]
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.PixelSpacing, ds.SliceThickness = [0.5, 0.5], 0.625
            ds.Rows = ds.Columns = SLICE
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
            ds.RescaleSlope, ds.RescaleIntercept = 1, 0
            ds.PixelData = pixels.tobytes()
            path = folder / f"slice_{index:05d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            paths.append(path)
    return paths


def evict(paths: list[Path]) -> None:
    """Drop the files' pages from the page cache, so the next read comes from storage."""
    os.sync()
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def raw_read(paths: list[Path]) -> tuple[float, int]:
    total, start = 0, time.perf_counter()
    for path in paths:
        with open(path, "rb", buffering=0) as handle:
            while block := handle.read(8 << 20):
                total += len(block)
    return time.perf_counter() - start, total


def raw_copy(paths: list[Path], folder: Path) -> float:
    """Seconds to read every source from storage and write its bytes to ``folder`` (no fsync, like ingest)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    evict(paths)
    start = time.perf_counter()
    for index, path in enumerate(paths):
        with open(path, "rb", buffering=0) as src, open(folder / f"{index:06d}", "wb", buffering=0) as dst:
            while block := src.read(8 << 20):
                dst.write(block)
    seconds = time.perf_counter() - start
    shutil.rmtree(folder, ignore_errors=True)
    return seconds


def timed_ingest(source: Path, store: Path, compression: str) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of one ``scorerecon ingest`` process."""
    shutil.rmtree(store, ignore_errors=True)
    os.sync()
    cli = Path(sys.executable).with_name("scorerecon")
    start = time.perf_counter()
    proc = subprocess.Popen([str(cli), "ingest", str(source), "-o", str(store), "--quiet",
                             "--compression", compression])
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"ingest of {source} failed")
    return seconds, usage.ru_maxrss / 1024.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=float, nargs="+", default=[1.0, 4.0], help="volume sizes in GB")
    parser.add_argument("--formats", nargs="+", default=["nifti", "dicom"], choices=["nifti", "dicom"])
    parser.add_argument("--compression", nargs="+", default=["lz4", "none"], choices=["lz4", "zstd", "none"])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/scorerecon-bench-ingest"))
    parser.add_argument("--keep", action="store_true", help="keep the synthetic files")
    args = parser.parse_args()

    rows = []
    for size in args.sizes:
        nz = int(round(size * 1e9 / (SLICE * SLICE * 2)))
        for fmt in args.formats:
            work = args.workdir / f"{fmt}_{size:g}GB"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            if fmt == "nifti":
                paths = write_nifti(work / "volume.nii", nz)
                source = paths[0]
            else:
                paths = write_dicom_series(work / "series", nz)
                source = work / "series"
            evict(paths)
            cold_s, nbytes = raw_read(paths)
            warm_s, _ = raw_read(paths)
            copy_s = raw_copy(paths, work / "copy")
            mb = nbytes / 1e6
            for compression in args.compression:
                evict(paths)
                ingest_s, rss_mb = timed_ingest(source, work / "store.zarr", compression)
                rows.append((fmt, f"512x512x{nz}", f"{mb:,.0f}", compression, f"{mb / cold_s:,.0f}",
                             f"{mb / warm_s:,.0f}", f"{mb / copy_s:,.0f}", f"{mb / ingest_s:,.0f}",
                             f"{cold_s / ingest_s:.2f}", f"{copy_s / ingest_s:.2f}", f"{rss_mb:,.0f}"))
                print(f"# {fmt} {size:g} GB {compression}: raw read {cold_s:.2f} s (storage) / {warm_s:.2f} s "
                      f"(cache), copy {copy_s:.2f} s, ingest {ingest_s:.2f} s, peak RSS {rss_mb:.0f} MB",
                      file=sys.stderr, flush=True)
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)

    print(f"command: python benchmarks/ingest.py {' '.join(sys.argv[1:])}")
    print(hardware.one_line())
    print("raw read from storage (pages evicted) and from the page cache; ingest = scorerecon ingest in a fresh "
          "process from storage, Zarr v3")
    print()
    print("| format | shape (int16) | MB | compression | raw read MB/s (storage) | raw read MB/s (cache) "
          "| raw copy MB/s | ingest MB/s | ingest / raw read | ingest / raw copy | ingest peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
