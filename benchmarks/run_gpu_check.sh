#!/usr/bin/env bash
# The one prepared GPU check (issue 16, item 8; docs/gpu_check.md): what `scorerecon reconstruct` and
# `evaluate` run, on one GPU, against the bare network.
#
#   make gpu-wheels                                   # once, where pip works: the packages the GPU image lacks
#   bash benchmarks/run_gpu_check.sh                  # on the GPU machine ($OUT: where the results go)
#   bash benchmarks/run_gpu_check.sh --dry-run        # anywhere: toy sizes on the CPU, checks every step runs
#
# Steps: (1) the packages the GPU image lacks (monai, zarr, numcodecs, donfig, google-crc32c, dask, nibabel,
# pydicom, sigpy, PyWavelets, jsonschema, affine and their missing dependencies) from the packed site folder
# wheels/gpu-site-cpXY.tar.xz that `make gpu-wheels` writes (GPU_WHEELS: the folder; loose *.whl also work)
# into a private target, only when one of them does not import; scorerecon
# itself by a symlink shim (no build); (2) the CUDA-only engine tests; (3) benchmarks/gpu_engine.py: per-task
# engine ratio, compiled NFE-tiles/s at 256^2 with the 26.6 M 'base' network, the 256x256x128 CT volume at
# 50 NFE, CPU-vs-GPU |dPSNR| on one small evaluation. Budget: <= 8 min cold on one H200 (compilation included;
# Inductor's cache under results/inductor_cache is reused by a rerun on the same machine).
# Results in $OUT: gpu_check.md (the tables and verdicts), gpu_check.json, gpu_check.log, tests.txt, env.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=()
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY=(--dry-run) ;;
        *) echo "usage: bash benchmarks/run_gpu_check.sh [--dry-run]" >&2; exit 2 ;;
    esac
done
OUT="${OUT:-results/gpu_check}"
mkdir -p "$OUT"
WHEELS="${GPU_WHEELS:-wheels}"
SITE="${GPU_SITE:-/tmp/scorerecon_gpu_site}"
export PYTHONUNBUFFERED=1
export PYTHONSAFEPATH=1  # the repo root's scorerecon/ folder must not shadow the installed package (or shim)

PY="${PY:-}"
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ] && { [ ${#DRY[@]} -gt 0 ] || .venv/bin/python -c \
            "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null; }; then
        PY=.venv/bin/python
    else
        PY=python3
    fi
fi
{ "$PY" -c "import sys, torch; print('python', sys.version.split()[0], '| torch', torch.__version__, '| cuda', \
torch.version.cuda, '|', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device')"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
} | tee "$OUT/env.txt"
if [ ${#DRY[@]} -eq 0 ] && ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    echo "no CUDA device for $PY: run with --dry-run to check the script on the CPU" | tee -a "$OUT/env.txt"
    exit 2
fi

# (1) dependencies: the packed site folder (make gpu-wheels) or loose wheels into a private target, only when
# something is missing (or forced)
NEEDED="monai zarr numcodecs donfig google_crc32c dask nibabel pydicom sigpy pywt jsonschema affine"
if [ "${GPU_CHECK_INSTALL:-0}" = 1 ] || ! "$PY" -c "import ${NEEDED// /,}" 2>/dev/null; then
    TAG=$("$PY" -c "import sys; print(f'cp{sys.version_info[0]}{sys.version_info[1]}')")
    PACK="$WHEELS/gpu-site-$TAG.tar.xz"
    rm -rf "$SITE" && mkdir -p "$SITE"
    if [ -f "$PACK" ]; then
        "$PY" -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter='data')" \
            "$PACK" "$SITE" || { echo "$PACK: could not unpack" | tee -a "$OUT/env.txt"; exit 2; }
        FROM="$PACK"
    elif ls "$WHEELS"/*.whl >/dev/null 2>&1; then
        if ! "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" \
                "$WHEELS"/*.whl 2>&1 | tail -3 | tee -a "$OUT/env.txt"; then
            echo "the wheels in $WHEELS/ do not install on this Python: 'make gpu-wheels GPU_PYTHON=X.Y'" \
                | tee -a "$OUT/env.txt"
            exit 2
        fi
        FROM="$(ls "$WHEELS"/*.whl | wc -l) wheels of $WHEELS/"
    else
        echo "missing packages and no $PACK (nor wheels) in $WHEELS/: run 'make gpu-wheels GPU_PYTHON=X.Y' where pip" \
            "works, carry $WHEELS" | tee -a "$OUT/env.txt"
        exit 2
    fi
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
    "$PY" -c "import ${NEEDED// /,}" || { echo "still missing after $FROM: see above" | tee -a "$OUT/env.txt"; exit 2; }
    echo "installed $FROM into $SITE" | tee -a "$OUT/env.txt"
fi
# scorerecon itself: the installed package, else a shim of symlinks laid out as pyproject's package-dir maps it
if ! "$PY" -c "import scorerecon.pipelines.cli" 2>/dev/null; then
    SHIM="$SITE/shim"
    rm -rf "$SHIM" && mkdir -p "$SHIM/scorerecon"
    for f in "$PWD"/scorerecon/*; do ln -s "$f" "$SHIM/scorerecon/"; done
    for d in models modalities pipelines; do ln -s "$PWD/$d" "$SHIM/scorerecon/$d"; done
    export PYTHONPATH="$SHIM${PYTHONPATH:+:$PYTHONPATH}"
    "$PY" -c "import scorerecon.pipelines.cli" || { echo "scorerecon does not import" | tee -a "$OUT/env.txt"; exit 2; }
fi
export TORCHINDUCTOR_CACHE_DIR="${TORCHINDUCTOR_CACHE_DIR:-$PWD/results/inductor_cache}"

# (2) the engine tests that need CUDA (skipped, and quick, without one)
timeout 90 "$PY" -m pytest -q -rs -p no:cacheprovider tests/test_engine.py -k "cuda or gpu" 2>&1 \
    | tail -15 | tee "$OUT/tests.txt"

# (3) the check itself
LIMIT=$([ ${#DRY[@]} -gt 0 ] && echo 600 || echo 390)
timeout "$LIMIT" "$PY" benchmarks/gpu_engine.py "${DRY[@]}" --out "$OUT/gpu_check.md" 2>&1 | tee "$OUT/gpu_check.log"
exit "${PIPESTATUS[0]}"
