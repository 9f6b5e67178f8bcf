#!/usr/bin/env bash
# M2 (semi-supervised CVAE-2) on the embedded MNIST, 3 seeds, 30 epochs:
#  - 10 labels per class (100 labels, the other 3 900 training digits unlabelled), with the
#    unlabelled bound (model.use_unlabelled=true) and without it: the same classifier q(y|x)
#    trained on the 100 labelled digits only;
#  - all 4 000 labels;
# next to scikit-learn on the same labels. About 25 minutes on a 2-core CPU.
# Usage: bash experiments/m2/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
out=experiments/m2
sweep=runs/m2
rm -rf "$sweep"
common="trainer.max_epochs=30 model.alpha=${ALPHA:-100} trainer.enable_progress_bar=false trainer.enable_model_summary=false"
cvaezoo-train -m model=m2 data.labels_per_class=10 model.use_unlabelled=true,false seed=0,1,2 \
  hydra.sweep.dir="$sweep/labels100" $common
cvaezoo-train -m model=m2 seed=0,1,2 hydra.sweep.dir="$sweep/labels_all" $common
cvaezoo-collect "$sweep" --out "$out" --metrics test/accuracy test/elbo fit_seconds
python experiments/baselines.py data.labels_per_class=10 > "$out/baselines_100_labels.jsonl"
python experiments/baselines.py > "$out/baselines_all_labels.jsonl"
