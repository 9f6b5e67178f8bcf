#!/usr/bin/env bash
# The ELBO plug-in of Bayes rule against the importance-weighted bound (K = 1000), class by class, for the zoo's
# seed-0 runs of CVAE-1, -2 and -4 (trained as in experiments/zoo: 50 epochs). About 20 minutes on 2 cores.
# Usage: bash experiments/bayes_gap/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
sweep=runs/zoo/mnist5k_gap
cvaezoo-train -m experiment=zoo model=cvae1,cvae2,cvae4 seed=0 data=mnist5k hydra.sweep.dir=$sweep skip_if_done=true
OMP_NUM_THREADS=1 python experiments/bayes_gap/gap.py experiments/bayes_gap/gap.json "$sweep"/*/ --n 200
