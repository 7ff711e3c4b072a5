#!/usr/bin/env bash
# The one prepared device check for the tile engine (issue 9), for a session with a lent H100.
#
#   OUT=/some/dir bash benchmarks/run_gpu_check.sh        # the device tool sets $OUT itself
#
# 1. the engine / tiling tests, GPU-only ones included (CUDA device choice, memory planner probe,
#    CPU-vs-GPU 0.1 dB test);
# 2. benchmarks/gpu_engine.py at full size: MONAI DiffusionModelUNet 'base' (26.6 M), 256^2 tiles,
#    batch 64, DDIM 50 NFE, torch.compile (mode "default": max-autotune takes minutes on this
#    UNet) + bf16 autocast + SDPA attention, the 256x256x128 volume, and the CPU-vs-GPU PSNR check
#    (on the trained head-CT prior when checkpoints/head_ct_ddpm is present).
# Targets (issue 9): ratio >= 0.8, >= 525 NFE-tiles/s at 256^2, volume <= 300 s, |dPSNR| <= 0.1 dB.
# Everything lands in $OUT: tests.txt, gpu_engine.md (the tables), gpu_engine.log, nvidia_smi.csv.
# Budget: ~5-7 min cold; Inductor's cache is kept under results/inductor_cache (git-ignored) so a rerun on the same
# warm machine skips most compilation.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-results/gpu_check}"
mkdir -p "$OUT"
PY="${PY:-}"
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ] && .venv/bin/python -c "import torch,sys; sys.exit(not torch.cuda.is_available())"; then
        PY=.venv/bin/python
    else
        PY=python3
    fi
fi
export TORCHINDUCTOR_CACHE_DIR="${TORCHINDUCTOR_CACHE_DIR:-$PWD/results/inductor_cache}"
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv > "$OUT/nvidia_smi.csv" 2>&1
"$PY" -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))" \
    | tee "$OUT/torch.txt" || { echo "no CUDA torch in $PY" | tee -a "$OUT/torch.txt"; exit 2; }

timeout 180 "$PY" -m pytest -q -rs -p no:cacheprovider tests/test_engine.py tests/test_tiling.py 2>&1 \
    | tail -30 | tee "$OUT/tests.txt"

CKPT=()
[ -f checkpoints/head_ct_ddpm/model_card.json ] && CKPT=(--checkpoint checkpoints/head_ct_ddpm)
timeout 480 "$PY" benchmarks/gpu_engine.py --device cuda --preset base --size 256 --batch 64 --nfe 50 \
    --compile default --volume 256x256x128 --check on --check-slices 4 --check-nfe 20 "${CKPT[@]}" \
    --out "$OUT/gpu_engine.md" 2>&1 | tee "$OUT/gpu_engine.log"
