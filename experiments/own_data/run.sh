#!/usr/bin/env bash
# Your own data, end to end: a folder of PNG files (the embedded MNIST digits, 200 per class, written as
# DIR/<class name>/<n>.png) is trained on with data=folder, then new image files are classified with
# cvaezoo-classify --images and samples are written one PNG each. About 2 minutes on 2 CPU cores.
# Usage: bash experiments/own_data/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
root=runs/own_data
out=experiments/own_data
rm -rf "$root"
python experiments/own_data/write_pngs.py "$root/images" 200
cvaezoo-train model=cvae2 data=folder data.root="$root/images" data.binarize=dynamic trainer.max_epochs=30 \
  model.pixel_outlier_weight=0 `# as recorded, before #28` \
  trainer.enable_progress_bar=false trainer.enable_model_summary=false hydra.run.dir="$root/cvae2"
# new images: the 201st and 202nd digit of each class in the embedded set (the training folder has the first 200)
python experiments/own_data/write_pngs.py "$root/new_all" 202 > /dev/null
mkdir -p "$root/new"
for d in "$root"/new_all/*/; do ls "$d" | sort | tail -2 | while read -r f; do cp "$d/$f" "$root/new/$(basename "$d")_$f"; done; done
cvaezoo-classify "$root/cvae2" --images "$root/new" --out "$root/classify" | tee "$out/classify_images.txt"
cp "$root/classify/predictions.csv" "$out/predictions.csv"
cvaezoo-generate "$root/cvae2" -n 2 --each --n-examples 0 --out "$root/generate" > /dev/null
ls "$root/generate/samples" | head -4
