#!/usr/bin/env bash
# Real-vs-real floors of the sample-quality scores at the sizes the zoo, quadrant and attribute studies use
# (floors.py); the reference classifiers are trained by the same commands as in those studies (seeded: the same
# weights). A few minutes on 2 CPU cores.
# Usage: bash experiments/floors/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
quiet="trainer.enable_progress_bar=false trainer.enable_model_summary=false"
for data in mnist5k digits; do
  [ -f "runs/reference/$data/checkpoints/best.ckpt" ] || cvaezoo-reference data=$data $quiet
done
[ -f runs/attributes/reference/checkpoints/best.ckpt ] || \
  cvaezoo-reference experiment=attributes data.heldout=0 hydra.run.dir=runs/attributes/reference $quiet
python experiments/floors/floors.py experiments/floors/floors.json --mnist-reference runs/reference/mnist5k \
  --digits-reference runs/reference/digits --shapes-reference runs/attributes/reference
