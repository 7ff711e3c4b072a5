#!/usr/bin/env bash
# Train the three brain-MRI patch priors one after another on one CPU core (so the other core
# stays free), then draw a 4x4 sample grid from each into docs/figures/<name>_samples.png with
# the sampler and NFE its config recommends. Logs: checkpoints/<name>/train.log. Rerunning it
# resumes an interrupted training from its last checkpoint.
# Usage (from the project root): nohup bash workflows/config/train/run_brain_priors.sh &
set -u
cd "$(dirname "$0")/../../.."
BIN=.venv/bin/scorerecon
[ -d results/stores/colin27_t1.zarr ] || $BIN ingest data/demo/colin27_t1.nii.gz -o results/stores/colin27_t1.zarr
for name in brain_ddpm brain_ncsn brain_subvp; do
  mkdir -p checkpoints/$name docs/figures
  start=$(date +%s)
  $BIN train workflows/config/train/$name.yaml --threads 1 \
      --command "scorerecon train workflows/config/train/$name.yaml --threads 1" >> checkpoints/$name/train.log 2>&1
  echo "train exit $? after $(( $(date +%s) - start )) s" >> checkpoints/$name/train.log
  start=$(date +%s)
  $BIN sample checkpoints/$name --n 16 --seed 0 --threads 1 -o docs/figures/${name}_samples.png \
      >> checkpoints/$name/train.log 2>&1
  echo "sample exit $? after $(( $(date +%s) - start )) s" >> checkpoints/$name/train.log
done
