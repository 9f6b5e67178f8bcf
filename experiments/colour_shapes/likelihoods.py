"""The likelihood ablation of the colour study: CVAE-1 trained 60 epochs on the colour shapes under each pixel
likelihood (likelihoods.sh), its samples scored per attribute group by the study's reference classifier (10 per seen
combination, as groups.py), and its test bound.

    python experiments/colour_shapes/likelihoods.py REFERENCE_RUN RUN... > experiments/colour_shapes/likelihoods/results.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from cvaezoo.checkpoints import load_model, load_reference
from cvaezoo.inference import attribute_generation_accuracy, distinct_rows
from cvaezoo.runs import load_run_data


@torch.no_grad()
def main() -> None:
    reference = load_reference(Path(sys.argv[1]))
    rows = []
    for run in map(Path, sys.argv[2:]):
        model = load_model(run)
        data = load_run_data(run, [], model.x_shape, model.y_dim)
        combinations = distinct_rows(data.split_dataset("train").tensors[1])
        torch.manual_seed(0)
        scores = attribute_generation_accuracy(model, reference, combinations, n_per_combination=10)
        bpd = json.loads((run / "results.json").read_text()).get("test/bpd")  # none for a density (the Gaussian)
        rows.append((run.name, scores["group_accuracy"], scores["exact_match"], bpd))
    groups = data.group_names
    print("| CVAE-1, 60 epochs, likelihood | " + " | ".join(groups) + " | all six right | test −ELBO (bits/dim) |")
    print("|---|" + "---|" * (len(groups) + 2))
    for name, per_group, all_right, bpd in rows:
        print(f"| {name} | " + " | ".join(f"{a:.3f}" for a in per_group) + f" | {all_right:.3f} | {'–' if bpd is None else f'{bpd:.3f}'} |")


if __name__ == "__main__":
    main()
