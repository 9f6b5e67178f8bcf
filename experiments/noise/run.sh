#!/usr/bin/env bash
# Classifier mode under pixel noise (#28): CVAE-1, -2, -4 (Bayes rule over the class-conditional bound), 3 seeds,
# trained by the default recipe (binarised MNIST, Bernoulli, 100 epochs: cvaezoo-train model=M) and by the grey-level
# one (experiment=robustness: grey levels, discretised logistic, 30 epochs), each with no uniform outlier in the pixel
# likelihood (model.pixel_outlier_weight=0, the recipe before #28) and with the default one (0.01 for the Bernoulli,
# 0.3 for the discretised logistic), and on grey levels with a lighter one (0.1). noise.py adds uniform +-0.05, Gaussian sigma = 0.05 and uniform +-0.1 noise to
# the 500 test digits, classifies them as cvaezoo-classify --images does, and measures the mechanism.
# About 50 minutes on 2 CPU cores.
# Usage: bash experiments/noise/run.sh     (reruns only the training jobs that have no results.json)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=runs/noise
sweep() {  # folder, then overrides
  OMP_NUM_THREADS=1 cvaezoo-train -m model=cvae1,cvae2,cvae4 seed=0,1,2 "${@:2}" hydra.sweep.dir=$root/$1 \
    'hydra.sweep.subdir=${hydra:runtime.choices.model}_s${seed}' skip_if_done=true > /dev/null
}
sweep binary_without model.pixel_outlier_weight=0 &
sweep binary_default
wait
sweep grey_without experiment=robustness model.pixel_outlier_weight=0 &
sweep grey_default experiment=robustness
wait
sweep grey_outlier_0.1 experiment=robustness model.pixel_outlier_weight=0.1  # a lighter outlier, for comparison
python experiments/noise/noise.py $root/binary_without $root/binary_default $root/grey_without $root/grey_outlier_0.1 \
  $root/grey_default --out experiments/noise
