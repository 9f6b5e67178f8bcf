#!/usr/bin/env bash
# Li et al. (2019)'s protocol (README.md, "Li et al.'s protocol"): the seven factorisations and the network of the
# same size trained with experiment=li2019, then attacked (FGSM, PGD, MIM at eps 0.1 / 0.2 / 0.3) and their
# detectors scored (li2019.py), then li2019_table.py writes li2019.md.
# Pilot as recorded: seed 0, 30 epochs (theirs: 100), about 10 min of training per model and 5-25 min of attacks
# on one core; the recorded pilot attacked 100 digits for gfz and gfy and 50 (--n-attack 50) for the others.
# Usage: bash experiments/robustness/li2019.sh [SEEDS] [EPOCHS]   (default: 0 30)
set -euo pipefail
cd "$(dirname "$0")/../.."
seeds=${1:-0} epochs=${2:-30}
root=runs/li2019 out=experiments/robustness/li2019
common=(experiment=li2019 "seed=$seeds" "trainer.max_epochs=$epochs" skip_if_done=true)
cvaezoo-train -m "${common[@]}" model=gfz,gfy,gbz,gby,dfz hydra.sweep.dir=$root/generative
cvaezoo-train -m "${common[@]}" model=dfx,dbx,baseline model.likelihood=null '~model.likelihood_kwargs' \
  hydra.sweep.dir=$root/discriminative
# as recorded: 100 attacked digits for gfz and gfy, 50 for the others (a CPU budget)
for run in $root/*/*/; do
  case $run in *model=gfz,*|*model=gfy,*) n=100;; *) n=50;; esac
  echo "$run --n-attack $n"
done | OMP_NUM_THREADS=1 xargs -P 2 -L 1 sh -c 'python experiments/robustness/li2019.py "$0" "$@" --out-dir '"$out"
python experiments/robustness/li2019_table.py $out
# the control: the attacker on the classifier's own K = 10 bound instead of K = 1 (PGD, eps 0.1 / 0.2, 50 digits),
# beside K = 1 on the same 50 digits
for m in gfz gfy dfx; do
  run=$(ls -d $root/*/*model=$m,*/ | head -1)
  for k in 1 10; do
    OMP_NUM_THREADS=1 python experiments/robustness/li2019.py "$run" --out-dir ${out}_attacker_k${k}_n50 --n-attack 50 \
      --attack-samples $k --attacks pgd --eps 0.1 0.2
  done
done
