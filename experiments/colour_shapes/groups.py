"""Attribute accuracy of generated samples per attribute group (which attributes a model gets right), for the
runs of experiments/attributes/run.sh: 10 samples for each combination seen in training, seed 0 of each model
(every model of the registry with a folder in the study's root: run.sh trains CVAE-1 and CVAE-4),
judged by the study's reference classifier; the reference's own per-group accuracy on real test images beside.

    python experiments/colour_shapes/groups.py runs/colour_shapes > experiments/colour_shapes/groups.md
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from cvaezoo.attributes import group_matches
from cvaezoo.checkpoints import load_model
from cvaezoo.collect import registered_models_in
from cvaezoo.inference import distinct_rows
from cvaezoo.models.reference import load_reference
from cvaezoo.runs import load_run_data


@torch.no_grad()
def main() -> None:
    root = Path(sys.argv[1])
    reference = load_reference(root / "reference")
    rows = {}
    for name in registered_models_in(root):
        run = root / name / "s0"
        model = load_model(run)
        data = load_run_data(run, [], model.x_shape, model.y_dim)
        combinations = distinct_rows(data.split_dataset("train").tensors[1])
        torch.manual_seed(0)
        samples = model.sample(combinations, 10).flatten(0, 1)
        requested = combinations.repeat_interleave(10, dim=0)
        rows[f"{name} samples (seed 0)"] = group_matches(reference.classify(samples), requested, reference.groups).float().mean(0)
    x, y = data.split_tensors("test")
    rows["reference on real test images"] = group_matches(reference.classify(x), y, reference.groups).float().mean(0)
    groups = data.group_names
    print("| | " + " | ".join(groups) + " |")
    print("|---|" + "---|" * len(groups))
    for label, accuracy in rows.items():
        print(f"| {label} | " + " | ".join(f"{a:.3f}" for a in accuracy.tolist()) + " |")
    print("| chance | " + " | ".join(f"{1 / k:.3f}" if k > 1 else "0.500" for k in reference.groups) + " |")


if __name__ == "__main__":
    main()
