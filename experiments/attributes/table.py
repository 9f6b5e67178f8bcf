"""Assemble the attribute table and figures from the runs of experiments/attributes/run.sh.

    python experiments/attributes/table.py runs/attributes experiments/attributes
    python experiments/attributes/table.py runs/colour_shapes experiments/colour_shapes    (STUDY=colour_shapes)

Reads <root>/<model>/s<seed>/evaluate{,_unseen}/evaluation.json for every model of the registry with a folder
in <root> (run.sh trains CVAE-1 and CVAE-4), and <root>/reference/results.json.
Writes results.md / results.csv (mean ± std over seeds), unseen.png (each held-out combination:
its true image, then 4 samples of each model, seed 0) and copies the seed-0 editing
grids of the shape attribute (edit_shape_<model>.png).
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import torch

from cvaezoo.checkpoints import load_model
from cvaezoo.collect import markdown_table, mean_std, registered_models_in, seed_dirs, write_dicts_csv
from cvaezoo.models import MODELS
from cvaezoo.runs import load_run_data
from cvaezoo.viz import save_image_grid

OTHER_NAMES = {"cvae4": "CMMA"}  # the name the literature on attribute-conditioned generation gives CVAE-4
DECODER_CAPTIONS = {True: "decoder sees y", False: "decoder sees z only"}  # by the class's decoder_sees_condition
COLUMNS = {  # column title -> (evaluation file, key, sign)
    "attribute accuracy, seen": ("evaluate", "attribute_accuracy_seen", 1),
    "attribute accuracy, unseen": ("evaluate", "attribute_accuracy_unseen", 1),
    "all attributes right, seen": ("evaluate", "exact_match_seen", 1),
    "all attributes right, unseen": ("evaluate", "exact_match_unseen", 1),
    "test −ELBO, seen (nats)": ("evaluate", "test/elbo", -1),
    "−ELBO on unseen combinations (nats)": ("evaluate_unseen", "unseen/elbo", -1),
    "Fréchet distance, seen": ("evaluate", "frechet_distance_seen", 1),
    "Fréchet distance, unseen": ("evaluate", "frechet_distance_unseen", 1),
    "precision, seen": ("evaluate", "precision_seen", 1),
    "recall, seen": ("evaluate", "recall_seen", 1),
    "precision, unseen": ("evaluate", "precision_unseen", 1),
    "recall, unseen": ("evaluate", "recall_unseen", 1),
}
BITS = {  # 8-bit data (the colour shapes): the same bounds in bits per dimension
    "test −ELBO, seen (bits/dim)": ("evaluate", "test/bpd_elbo", 1),
    "−ELBO on unseen combinations (bits/dim)": ("evaluate_unseen", "unseen/bpd_elbo", 1),
}


def caption(model: str) -> str:
    """The model's display_name, the other name it goes by, and what its decoder sees."""
    cls = MODELS[model]
    also = f" / {OTHER_NAMES[model]}" if model in OTHER_NAMES else ""
    return f"{cls.display_name}{also} ({DECODER_CAPTIONS[cls.decoder_sees_condition]})"


def read(root: Path) -> tuple[list[dict], dict[str, tuple]]:
    """One row per run (models in registry order, seeds in order), and the columns they all have (the bits/dim
    ones only for 8-bit data)."""
    runs = []
    columns = dict(COLUMNS)
    for model in registered_models_in(root):
        for _, seed, run in (item for item in seed_dirs(root / model) if item[0] == ""):
            row = {"model": model, "seed": seed, "run_dir": str(run)}
            files = {folder: json.loads((run / folder / "evaluation.json").read_text()) for folder in ("evaluate", "evaluate_unseen")}
            for title, (folder, key, sign) in {**COLUMNS, **BITS}.items():
                if key in files[folder]:
                    row[title] = sign * files[folder][key]
            runs.append(row)
    columns.update({title: spec for title, spec in BITS.items() if runs and all(title in r for r in runs)})
    return runs, columns


def table(runs: list[dict], columns: dict[str, tuple], groups: list[int], reference_accuracy: float) -> str:
    rows = []
    for model in dict.fromkeys(r["model"] for r in runs):
        members = [r for r in runs if r["model"] == model]
        rows.append([caption(model), str(len(members)), *(mean_std([m[c] for m in members], ".3f", ".3f") for c in columns)])
    chance, combinations = sum(1 / k for k in groups) / len(groups), math.prod(groups)
    rows.append(["chance", "–", f"{chance:.3f}", f"{chance:.3f}", f"{1 / combinations:.4f}", f"{1 / combinations:.4f}",
                 *["–"] * (len(columns) - 4)])
    return (markdown_table(["model", "seeds", *columns], rows)
            + f"\nReference attribute classifier (all {combinations} combinations): accuracy {reference_accuracy:.3f} on its test split.\n")


@torch.no_grad()
def unseen_figure(root: Path, out: Path) -> Path | None:
    """Each held-out combination: its true image, then 4 samples of each model (seed 0; None unless every model has one)."""
    names = registered_models_in(root)
    runs = {m: root / m / "s0" for m in names if (root / m / "s0").is_dir()}
    if not runs or len(runs) < len(names):
        return None
    models = {m: load_model(run) for m, run in runs.items()}
    first = next(iter(runs))
    datamodule = load_run_data(runs[first], [], models[first].x_shape, models[first].y_dim)
    datamodule.setup()
    x, y = datamodule.splits["unseen"].tensors
    columns = [x[:, None]]
    for model in models.values():
        torch.manual_seed(0)
        columns.append(model.sample(y, 4).cpu())
    return save_image_grid(torch.cat(columns, dim=1), out / "unseen.png", scale=3)


def main() -> None:
    root, out = Path(sys.argv[1]), Path(sys.argv[2])
    runs, columns = read(root)
    if not runs:
        raise SystemExit(f"no runs below {root}: run experiments/attributes/run.sh")
    write_dicts_csv(out / "results.csv", runs)
    reference = json.loads((root / "reference" / "results.json").read_text())["test/accuracy"]
    groups = load_model(Path(runs[0]["run_dir"])).attribute_groups
    text = table(runs, columns, groups, reference)
    (out / "results.md").write_text(text)
    print(text)
    print(f"figure: {unseen_figure(root, out)}")
    for model in dict.fromkeys(r["model"] for r in runs):
        for name in ("edit_shape", "samples"):
            source = root / model / "s0" / "generate" / f"{name}.png"
            if source.exists():
                shutil.copy(source, out / f"{name}_{model}.png")


if __name__ == "__main__":
    main()
