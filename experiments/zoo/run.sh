#!/usr/bin/env bash
# The quality table of the whole zoo: CVAE-1..4 and the unconditional VAE, 3 seeds, default config
# but 50 epochs (to fit a 2-core CPU in half an hour), on the embedded MNIST and on sklearn's 8x8 digits; each run evaluated on its test
# split (ELBO terms, IWAE K=100, classifier accuracy, conditional-generation accuracy, and the Fréchet distance,
# precision and recall of the samples in the reference classifier's features); scikit-learn
# baselines on the same splits. About 15 minutes on a 2-core CPU.
# Usage: bash experiments/zoo/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
out=experiments/zoo
quiet="trainer.enable_progress_bar=false trainer.enable_model_summary=false"
for data in mnist5k digits; do
  sweep=runs/zoo/$data
  rm -rf "$sweep"
  [ -f "runs/reference/$data/checkpoints/best.ckpt" ] || cvaezoo-reference data=$data $quiet
  cvaezoo-train -m experiment=zoo model=cvae1,cvae2,cvae3,cvae4,vae seed=0,1,2 data=$data hydra.sweep.dir="$sweep"
  for run in "$sweep"/*/; do
    cvaezoo-evaluate "$run" --iwae-samples 100 --reference "runs/reference/$data" > /dev/null
  done
  cvaezoo-collect "$sweep" --out "$out/$data" --include evaluate/evaluation.json \
    --metrics test/elbo test/recon test/kl test/iwae_k100 test/accuracy generation_accuracy \
    frechet_distance precision recall fit_seconds
  python experiments/baselines.py data=$data > "$out/$data/baselines.jsonl"
done
