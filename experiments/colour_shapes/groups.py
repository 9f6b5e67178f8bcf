"""Attribute accuracy of generated samples per attribute group (which attributes a model gets right), for the
runs of experiments/attributes/run.sh: each seed's ``group_accuracy_seen`` of cvaezoo-evaluate (100 samples for each
combination seen in training, judged by the study's reference classifier), mean ± std over seeds, for every model
of the registry with a folder in the study's root (run.sh trains CVAE-1 and CVAE-4); the reference's own per-group
accuracy on the real image of every combination beside (split by whether its training draws held it), and a check
without the reference: how often a sample's nearest real image is the requested combination's.

    python experiments/colour_shapes/groups.py runs/colour_shapes > experiments/colour_shapes/groups.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from cvaezoo.attributes import group_matches
from cvaezoo.checkpoints import load_model, load_reference
from cvaezoo.collect import mean_std, registered_models_in, seed_dirs
from cvaezoo.data.shapes import combination_vector
from cvaezoo.inference import distinct_rows, samples_for
from cvaezoo.runs import load_run_data

NEAREST_SAMPLES = 20


def every_combination_once(data) -> tuple[torch.Tensor, torch.Tensor]:
    """The image of every attribute combination, each once. The images are a deterministic function of the attributes,
    so this is every real image there is (a split's random draws weigh some combinations twice and miss others); the
    reference (data.heldout=0) trained on draws of all of them."""
    combinations = data.all_combinations()
    return torch.stack([data.render(c) for c in combinations]), torch.stack([combination_vector(c) for c in combinations])


def nearest_real_match(model, images: torch.Tensor, vectors: torch.Tensor, combinations: torch.Tensor, n: int) -> float:
    """Fraction of ``n`` samples per combination whose nearest real image (Euclidean over pixels, among ``images``,
    one per combination, attributes ``vectors``) is the requested combination's: a check without the reference."""
    hits = []
    for part, samples in samples_for(model, combinations, n):
        nearest = vectors[torch.cdist(samples.flatten(1), images.flatten(1)).argmin(1)]
        hits.append((nearest == part.repeat_interleave(n, dim=0)).all(1))
    return float(torch.cat(hits).float().mean())


@torch.no_grad()
def main() -> None:
    root = Path(sys.argv[1])
    reference = load_reference(root / "reference")
    data = load_run_data(root / "reference", [], reference.hparams.x_shape, reference.hparams.y_dim)
    x, y = every_combination_once(data)
    rows, nearest = {}, {}
    for name in registered_models_in(root):
        runs = [run for _, _, run in seed_dirs(root / name)]
        per_seed = [json.loads((run / "evaluate" / "evaluation.json").read_text())["group_accuracy_seen"] for run in runs]
        rows[f"{name} samples ({len(runs)} seeds)"] = [mean_std(list(group), ".3f", ".3f") for group in zip(*per_seed)]
        matches = []
        for run in runs:
            model = load_model(run)
            seen = distinct_rows(load_run_data(run, [], model.x_shape, model.y_dim).split_dataset("train").tensors[1])
            torch.manual_seed(0)
            matches.append(nearest_real_match(model, x, y, seen, NEAREST_SAMPLES))
        nearest[name] = mean_std(matches, ".4f", ".4f")
    matches = group_matches(reference.classify(x), y, reference.groups).float()
    rows[f"reference on the real image of each of the {len(y)} combinations"] = [f"{a:.3f}" for a in matches.mean(0).tolist()]
    drawn = distinct_rows(data.split_dataset("train").tensors[1])
    in_training = (y[:, None] == drawn[None]).all(-1).any(1)
    for label, chosen in (("that it trained on", in_training), ("that its training draws missed", ~in_training)):
        if chosen.any():
            rows[f"  the {int(chosen.sum())} {label}"] = [f"{a:.3f}" for a in matches[chosen].mean(0).tolist()]
    groups = data.group_names
    print("| | " + " | ".join(groups) + " |")
    print("|---|" + "---|" * len(groups))
    for label, accuracy in rows.items():
        print(f"| {label} | " + " | ".join(accuracy) + " |")
    print("| chance | " + " | ".join(f"{1 / k:.3f}" if k > 1 else "0.500" for k in reference.groups) + " |")
    print(f"\nWithout the reference: the fraction of samples ({NEAREST_SAMPLES} per seen combination, seed 0 of torch's "
          "generator) whose nearest real image, by Euclidean distance over pixels, is the requested combination's:\n")
    print("| model | nearest real image is the requested one |\n|---|---|")
    for name, value in nearest.items():
        print(f"| {name} ({len(seed_dirs(root / name))} seeds) | {value} |")


if __name__ == "__main__":
    main()
