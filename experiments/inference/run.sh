#!/usr/bin/env bash
# Classifier mode and generation for the four models after the default training (seed 0),
# next to scikit-learn baselines on the same split. About 10 minutes on a 2-core CPU.
# Usage: bash experiments/inference/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
out=experiments/inference
sweep=runs/inference
rm -rf "$sweep" runs/reference/mnist5k
cvaezoo-reference trainer.enable_progress_bar=false
cvaezoo-train -m experiment=default_runs model=cvae1,cvae2,cvae3,cvae4 model.pixel_outlier_weight=0 hydra.sweep.dir="$sweep"  # as recorded, before #28
for run in "$sweep"/*/; do
  cvaezoo-evaluate "$run" --iwae-samples 100
  cvaezoo-classify "$run"
  case "$run" in *cvae3*) ;; *) cvaezoo-classify "$run" --method iwae --samples 100 --out "$run/classify_iwae" ;; esac
done
python experiments/baselines.py > "$out/baselines.jsonl"
python "$out/table.py" "$sweep" "$out/baselines.jsonl" runs/reference/mnist5k/results.json > "$out/results.md"
cat "$out/results.md"
