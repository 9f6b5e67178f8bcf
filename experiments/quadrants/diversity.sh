#!/usr/bin/env bash
# Several completions per input, measured (diversity.py): NN, GSNN, CVAE and hybrid with Q quadrants given
# (default 1, the most ambiguous task), SEEDS seeds (default 0), the runs of run.sh's layout (kept and skipped
# when finished), a reference classifier of whole digits (cvaezoo-reference data=mnist5k) to count the digits
# among the completions. About 15 minutes on 2 CPU cores per seed.
# Usage: SEEDS=0,1,2 bash experiments/quadrants/diversity.sh      (SEEDS=0 and Q=1 by default)
set -euo pipefail
cd "$(dirname "$0")/../.."
SEEDS=${SEEDS:-0}
Q=${Q:-1}
root=runs/quadrants
quiet="trainer.enable_progress_bar=false trainer.enable_model_summary=false"
[ -f runs/reference/mnist5k/checkpoints/best.ckpt ] || cvaezoo-reference data=mnist5k $quiet
# cvae_wd: the CVAE with weight decay 1e-3 (a prior network p(z|x) that overfits less; see the README)
for row in "cvae model=cvae3" "nn model=baseline" "gsnn model=gsnn" "hybrid model=hybrid" \
           "cvae_wd model=cvae3 model.weight_decay=1e-3"; do
  set -- $row
  cvaezoo-train -m experiment=quadrants data.given_quadrants=$Q seed=$SEEDS skip_if_done=true ${@:2} \
    hydra.sweep.dir=$root/$1 'hydra.sweep.subdir=q${data.given_quadrants}_s${seed}'
done
python experiments/quadrants/diversity.py $root experiments/quadrants --reference runs/reference/mnist5k --quadrants $Q
