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
# conf/experiment/m2.yaml holds the settings (100 labels, alpha 100, 30 epochs); ALPHA=a overrides alpha
alpha=${ALPHA:+model.alpha=$ALPHA}
cvaezoo-train -m experiment=m2 model.use_unlabelled=true,false seed=0,1,2 hydra.sweep.dir="$sweep/labels100" $alpha
cvaezoo-train -m experiment=m2 data.labels_per_class=null seed=0,1,2 hydra.sweep.dir="$sweep/labels_all" $alpha
cvaezoo-collect "$sweep" --out "$out" --metrics test/accuracy test/elbo fit_seconds
python experiments/baselines.py data.labels_per_class=10 > "$out/baselines_100_labels.jsonl"
python experiments/baselines.py > "$out/baselines_all_labels.jsonl"
