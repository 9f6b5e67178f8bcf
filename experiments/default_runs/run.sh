#!/usr/bin/env bash
# Each model trained with the default config (100 epochs, embedded MNIST 4000/500/500), seed 0.
# Usage: bash experiments/default_runs/run.sh   (about 5 minutes on a 2-core CPU)
set -euo pipefail
cd "$(dirname "$0")/../.."
sweep=runs/default_runs
rm -rf "$sweep"
cvaezoo-train -m experiment=default_runs model=cvae1,cvae2,cvae3,cvae4 hydra.sweep.dir="$sweep"
cvaezoo-collect "$sweep" --out experiments/default_runs \
  --metrics val/elbo_best test/elbo test/recon test/kl
