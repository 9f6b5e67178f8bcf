"""Attribute accuracy of generated samples per attribute group (which attributes a model gets right), for the
runs of experiments/attributes/run.sh: each seed's ``group_accuracy_seen`` of cvaezoo-evaluate (100 samples for each
combination seen in training, judged by the study's reference classifier), mean ± std over seeds, for every model
of the registry with a folder in the study's root (run.sh trains CVAE-1 and CVAE-4); the reference's own per-group
accuracy on the real image of every combination beside.

    python experiments/colour_shapes/groups.py runs/colour_shapes > experiments/colour_shapes/groups.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from cvaezoo.attributes import group_matches
from cvaezoo.collect import mean_std, registered_models_in, seed_dirs
from cvaezoo.data.shapes import combination_vector
from cvaezoo.models.reference import load_reference
from cvaezoo.runs import load_run_data


def every_combination_once(data) -> tuple[torch.Tensor, torch.Tensor]:
    """The image of every attribute combination, each once. The images are a deterministic function of the attributes,
    so this is every real image there is (a split's random draws weigh some combinations twice and miss others); the
    reference (data.heldout=0) trained on draws of all of them."""
    combinations = data.all_combinations()
    return torch.stack([data.render(c) for c in combinations]), torch.stack([combination_vector(c) for c in combinations])


@torch.no_grad()
def main() -> None:
    root = Path(sys.argv[1])
    reference = load_reference(root / "reference")
    rows = {}
    for name in registered_models_in(root):
        runs = [run for _, _, run in seed_dirs(root / name)]
        per_seed = [json.loads((run / "evaluate" / "evaluation.json").read_text())["group_accuracy_seen"] for run in runs]
        rows[f"{name} samples ({len(runs)} seeds)"] = [mean_std(list(group), ".3f", ".3f") for group in zip(*per_seed)]
    data = load_run_data(root / "reference", [], reference.hparams.x_shape, reference.hparams.y_dim)
    x, y = every_combination_once(data)
    real = group_matches(reference.classify(x), y, reference.groups).float().mean(0)
    rows[f"reference on the real image of each of the {len(y)} combinations"] = [f"{a:.3f}" for a in real.tolist()]
    groups = data.group_names
    print("| | " + " | ".join(groups) + " |")
    print("|---|" + "---|" * len(groups))
    for label, accuracy in rows.items():
        print(f"| {label} | " + " | ".join(accuracy) + " |")
    print("| chance | " + " | ".join(f"{1 / k:.3f}" if k > 1 else "0.500" for k in reference.groups) + " |")


if __name__ == "__main__":
    main()
