#!/usr/bin/env bash
# CVAE-1 vs CVAE-4 (CMMA) conditioned on multi-hot attributes of the generated shapes (data=shapes:
# 144 combinations of shape, size, column, row, fill; 12 combinations held out of training).
# Each model: 3 seeds, EPOCHS epochs. Scored: the attribute accuracy of generated samples for the
# 132 seen and the 12 unseen combinations (100 samples each), judged by a reference attribute
# classifier trained on all 144 combinations; test -ELBO on seen and on unseen combinations;
# attribute-editing grids. About 45 minutes on 2 CPU cores (200 epochs).
# Usage: bash experiments/attributes/run.sh      (the epochs of conf/experiment/$STUDY.yaml by default; EPOCHS=N overrides)
#        TAG=mlp EPOCHS=60 OVERRIDES="net=mlp" bash experiments/attributes/run.sh   (a variant: runs/attributes_mlp, results in
#        experiments/attributes/mlp; OVERRIDES go to every model's training)
#        STUDY=colour_shapes REFERENCE_EPOCHS=100 bash experiments/attributes/run.sh   (the same study in colour: 576
#        combinations, 8-bit RGB, conv nets; conf/experiment/colour_shapes.yaml; results in experiments/colour_shapes;
#        the reference trains 100 epochs instead of 15: at 15 it got 0.72 of the shapes right)
set -euo pipefail
cd "$(dirname "$0")/../.."
study=${STUDY:-attributes}
root=runs/$study${TAG:+_$TAG}
out=experiments/$study${TAG:+/$TAG}
quiet="trainer.enable_progress_bar=false trainer.enable_model_summary=false"
reference=$root/reference  # its run directory (checkpoints/best.ckpt)
rm -rf "$root"
cvaezoo-reference experiment=$study data.heldout=0 hydra.run.dir=$root/reference $quiet ${REFERENCE_EPOCHS:+trainer.max_epochs=$REFERENCE_EPOCHS}
for model in cvae1 cvae4; do
  # conf/experiment/$study.yaml holds the settings (data=shapes, nets, epochs); EPOCHS=N overrides them
  cvaezoo-train -m experiment=$study model=$model seed=0,1,2 ${EPOCHS:+trainer.max_epochs=$EPOCHS} ${OVERRIDES:-} \
    hydra.sweep.dir=$root/$model 'hydra.sweep.subdir=s${seed}'
done
for run in "$root"/cvae*/s*/; do
  cvaezoo-evaluate "$run" --iwae-samples 100 --reference "$reference" --n-per-class 100 > /dev/null
  cvaezoo-evaluate "$run" --iwae-samples 100 --split unseen --out "$run/evaluate_unseen" --reference "$reference" --n-per-class 1 > /dev/null
  cvaezoo-generate "$run" -n 8 --n-examples 8 > /dev/null  # samples.png and one edit_<attribute>.png per group
done
mkdir -p "$out"
python experiments/attributes/table.py "$root" "$out"
