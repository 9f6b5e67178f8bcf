#!/usr/bin/env bash
# The likelihood ablation of the colour study: CVAE-1, 60 epochs, seed 0, under the discretised logistic with a
# log-scale per pixel (scale=pixel, the 8-bit default), with one shared log-scale per channel (scale=shared, the
# study's setting), under the mixture of 5 logistics (per-pixel scales), and under a Gaussian of fixed std 0.05
# (mean squared error, not a pmf: its bits/dim column is not comparable); scored by the study's reference
# (runs/colour_shapes/reference: run STUDY=colour_shapes REFERENCE_EPOCHS=100 bash experiments/attributes/run.sh first).
# About 12 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=runs/colour_shapes_likelihoods
train() { OMP_NUM_THREADS=1 cvaezoo-train experiment=colour_shapes model=cvae1 trainer.max_epochs=60 hydra.run.dir=$root/$1 "${@:2}" > /dev/null; }
train logistic_pixel model.likelihood_kwargs.scale=pixel &
train logistic_shared model.likelihood_kwargs.scale=shared
wait
train mixture_pixel model.likelihood=discretized_logistic_mixture '~model.likelihood_kwargs.scale' &
train gaussian_fixed model.likelihood=gaussian '~model.likelihood_kwargs.scale' '+model.likelihood_kwargs.learn_variance=false' '+model.likelihood_kwargs.fixed_std=0.05'
wait
python experiments/colour_shapes/likelihoods.py runs/colour_shapes/reference $root/logistic_pixel $root/logistic_shared \
  $root/mixture_pixel $root/gaussian_fixed > experiments/colour_shapes/likelihoods/results.md
