#!/usr/bin/env bash
# The pretrained models of the package (cvaezoo/pretrained/mnist5k/<name>, listed by cvaezoo-models): trained with
# experiment=pretrained (the default training with a net of hidden [256, 128]), seed 0, then exported as float16
# with their model cards; the cards' metrics are measured on the exported weights with the reference classifier
# exported beside them. About 10 minutes on a 2-core CPU.
# Usage: bash experiments/pretrained/run.sh [--export-only]   (--export-only: export the runs of an earlier call again)
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=runs/pretrained out=cvaezoo/pretrained/mnist5k
rm -rf "$out"
if [ "${1:-}" != --export-only ]; then
  rm -rf "$runs"
  cvaezoo-reference hydra.run.dir=$runs/reference trainer.enable_progress_bar=false
  cvaezoo-train -m experiment=pretrained model=cvae1,cvae2,cvae3,cvae4,m2,vae hydra.sweep.dir=$runs \
    hydra.sweep.subdir='${hydra:runtime.choices.model}'
fi
cvaezoo-export $runs/reference $out/reference --dtype float16
for model in cvae1 cvae2 cvae3 cvae4 m2 vae; do
  cvaezoo-export $runs/$model $out/$model --dtype float16 --reference $out/reference
done
du -cb $out/*/model.safetensors | tail -1 | awk '{printf "weights: %.2f MB\n", $1 / 1e6}'
du -cb $out/*/* | tail -1 | awk '{printf "everything shipped: %.2f MB\n", $1 / 1e6}'
cvaezoo-models | tee experiments/pretrained/models.txt
