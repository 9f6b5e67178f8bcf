#!/usr/bin/env bash
# Which factorisation makes the most trustworthy classifier? Every classifier of the zoo (Bayes rule over the
# bound of CVAE-1, -2, -4; CVAE-3's p(y|x); M2's q(y|x); the deterministic network of the same size, "baseline")
# trained on the embedded MNIST in grey levels, 3 seeds, 30 epochs; the generative ones twice: with their default
# likelihood for 8-bit pixels (discretised logistic) and with a Bernoulli on grey levels. Each run is then attacked
# (FGSM, PGD, SPSA), its detector scored on the attacked images and on 5 out-of-distribution sets
# (experiments/robustness/study.py), and table.py writes results.md, accuracy_vs_eps.png and attacked.png.
# Training takes about 10 minutes on 2 CPU cores; the studies about 60 (two at a time).
# Usage: bash experiments/robustness/run.sh     (reruns only the training jobs that have no results.json)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=runs/robustness
out=experiments/robustness
# the recipe before #28: no uniform outlier in the pixel likelihoods (model.pixel_outlier_weight=0)
cvaezoo-train -m experiment=robustness model=cvae1,cvae2,cvae3,cvae4,m2,baseline seed=0,1,2 model.pixel_outlier_weight=0 \
  hydra.sweep.dir=$root/sweep skip_if_done=true
cvaezoo-train -m experiment=robustness model=cvae1,cvae2,cvae4,m2 seed=0,1,2 model.pixel_outlier_weight=0 \
  model.likelihood=bernoulli model.allow_grey_bernoulli=true hydra.sweep.dir=$root/bernoulli skip_if_done=true
rm -rf "$out/runs"
for variant in sweep bernoulli; do
  ls -d "$root/$variant"/*/ | OMP_NUM_THREADS=1 xargs -P 2 -I{} \
    python experiments/robustness/study.py {} --out-dir "$out/runs/$variant"
done
python experiments/robustness/table.py "$out"
