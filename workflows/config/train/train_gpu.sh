#!/usr/bin/env bash
# Retrain every shipped prior concurrently on one GPU (`make train-gpu`; issue 15 item 6).
# A shipped prior is a checkpoints/<name>/ with a training config workflows/config/train/<name>.yaml.
# One background `scorerecon train` per prior, all on the same GPU, each with batch BATCH (128), a
# wall-clock budget of MINUTES (8) after which it checkpoints (start-up adds well under a minute),
# one CPU thread for its data loading; output results/priors_gpu/<name>/ (model + card + resumable
# state) and its log results/priors_gpu/<name>.log. The script `wait`s for every run, prints one
# line per prior and exits non-zero if any failed. Cards say `complete: true` only when a run reached
# its config's `training.steps`; otherwise `stopped: time_budget`, and running this again continues
# each run for another MINUTES. Nothing in checkpoints/ is touched: copy a result there only after
# the benchmarks confirm it. Measured on an H200: three 1.1 M priors side by side at 11-12 steps/s
# each (batch 128, data loading included).
# Usage (from anywhere): MINUTES=8 BATCH=128 DEVICE=cuda bash workflows/config/train/train_gpu.sh
# (PRIORS="brain_ddpm head_ct_ddpm" restricts it to those priors; OUT changes the output folder.)
set -u
cd "$(dirname "$0")/../../.."
MINUTES=${MINUTES:-8} BATCH=${BATCH:-128} DEVICE=${DEVICE:-cuda} OUT=${OUT:-results/priors_gpu}
BIN=.venv/bin/scorerecon
if [[ $DEVICE == cuda* ]] && ! .venv/bin/python -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
  echo "train-gpu: CUDA is not available to .venv's torch (install a CUDA build of torch into .venv)" >&2
  exit 2
fi
[ -d results/stores/colin27_t1.zarr ] || $BIN ingest data/demo/colin27_t1.nii.gz -o results/stores/colin27_t1.zarr -q
[ -d results/stores/head_ct_hu.zarr ] || $BIN ingest data/demo/head_ct_hu.nii.gz -o results/stores/head_ct_hu.zarr -q
mkdir -p "$OUT"
names=() pids=()
# NEW_PRIORS: configs trained here before any checkpoint of theirs ships (issue 18: the natural priors on
# the registry photographs of `make photos`)
NEW_PRIORS=${NEW_PRIORS:-photos_prior photos_sr4}
for card in checkpoints/*/model_card.json $(printf 'new/%s/model_card.json ' $NEW_PRIORS); do
  name=$(basename "$(dirname "$card")")
  if [[ $card == new/* && -f checkpoints/$name/model_card.json ]]; then continue; fi  # shipped by now
  if [ -n "${PRIORS:-}" ] && [[ " $PRIORS " != *" $name "* ]]; then continue; fi
  config=workflows/config/train/$name.yaml
  if [ ! -f "$config" ]; then echo "skip   $name: no $config"; continue; fi
  OMP_NUM_THREADS=1 $BIN train "$config" -o "$OUT/$name" --device "$DEVICE" --batch-size "$BATCH" \
      --minutes "$MINUTES" --threads 1 -q > "$OUT/$name.log" 2>&1 &
  names+=("$name") pids+=($!)
done
failed=0
for i in "${!pids[@]}"; do
  if wait "${pids[$i]}"; then status=ok; else status=FAILED failed=1; fi
  echo "$status $(printf '%-20s' "${names[$i]}") $(tail -n 1 "$OUT/${names[$i]}.log")"
done
exit $failed
