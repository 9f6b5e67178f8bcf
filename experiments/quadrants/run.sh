#!/usr/bin/env bash
# Sohn et al. (2015)'s MNIST quadrant completion on the embedded 5 000 digits (4 000 train,
# 500 validation, 500 test, binarized at 0.5): NN baseline, GSNN, CVAE (CVAE-3), hybrid (alpha 0.5)
# and CVAE with p(z|x) initialised from the NN, for 1, 2 and 3 given quadrants, SEEDS seeds each.
# Every run keeps its best-validation checkpoint; the table is the test -log p(y|x) in nats per
# image, importance-sampled with S=100 (q(z|x,y) as proposal; p(z|x) for the GSNN; exact for NN).
# Usage: bash experiments/quadrants/run.sh      (EPOCHS=50, SEEDS=0,1,2 by default; about 50 minutes on 2 CPU
# cores). Finished runs are kept and skipped (skip_if_done); delete runs/quadrants to start afresh.
set -euo pipefail
cd "$(dirname "$0")/../.."
SEEDS=${SEEDS:-0,1,2}
root=runs/quadrants
out=experiments/quadrants
# conf/experiment/quadrants.yaml holds the settings (50 epochs); EPOCHS=N overrides them
sweep="experiment=quadrants data.given_quadrants=1,2,3 seed=$SEEDS skip_if_done=true ${EPOCHS:+trainer.max_epochs=$EPOCHS}"
subdir='hydra.sweep.subdir=q${data.given_quadrants}_s${seed}'
train() {  # train <row folder> <overrides...>
  local row=$1; shift
  cvaezoo-train -m $sweep hydra.sweep.dir="$root/$row" "$subdir" "$@"
}
train nn model=baseline
# the GSNN never trains q(z|x,y), so its val/elbo says nothing: it keeps the checkpoint with the best val/loss
train gsnn model=gsnn
train cvae model=cvae3
train hybrid model=hybrid
train cvae_nninit model=cvae3 'model.init_prior_from=runs/quadrants/nn/q${data.given_quadrants}_s${seed}'
for run in "$root"/*/q*_s*/; do
  [ -f "$run/evaluate/evaluation.json" ] && [ "$run/evaluate/evaluation.json" -nt "$run/results.json" ] && continue
  cvaezoo-evaluate "$run" --iwae-samples 100 > /dev/null
  cvaezoo-generate "$run" -n 6 --n-examples 10 > /dev/null  # completions.png: input, truth, 6 draws
done
python experiments/quadrants/table.py "$root" "$out"
