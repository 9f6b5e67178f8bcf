"""Assemble the attribute table and figures from the runs of experiments/attributes/run.sh.

    python experiments/attributes/table.py runs/attributes experiments/attributes

Writes results.md / results.csv (mean ± std over seeds), unseen.png (each held-out combination:
its true image, then 4 samples of CVAE-1 and 4 of CVAE-4, seed 0) and copies the seed-0 editing
grids of the shape attribute (edit_shape_<model>.png).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch

from cvaezoo.checkpoints import load_model
from cvaezoo.collect import mean_std, write_dicts_csv
from cvaezoo.data.shapes import SHAPE_FACTORS
from cvaezoo.runs import load_run_data
from cvaezoo.viz import save_image_grid

MODELS = {"cvae1": "CVAE-1 (decoder sees y)", "cvae4": "CVAE-4 / CMMA (decoder sees z only)"}
COLUMNS = {  # column title -> (evaluation file, key, sign)
    "attribute accuracy, seen": ("evaluate", "attribute_accuracy_seen", 1),
    "attribute accuracy, unseen": ("evaluate", "attribute_accuracy_unseen", 1),
    "all attributes right, seen": ("evaluate", "exact_match_seen", 1),
    "all attributes right, unseen": ("evaluate", "exact_match_unseen", 1),
    "test −ELBO, seen (nats)": ("evaluate", "test/elbo", -1),
    "−ELBO on unseen combinations (nats)": ("evaluate_unseen", "unseen/elbo", -1),
}


def read(root: Path) -> list[dict]:
    runs = []
    for model in MODELS:
        for run in sorted((root / model).glob("s*")):
            row = {"model": model, "seed": int(run.name[1:]), "run_dir": str(run)}
            for title, (folder, key, sign) in COLUMNS.items():
                row[title] = sign * json.loads((run / folder / "evaluation.json").read_text())[key]
            runs.append(row)
    return runs


def table(runs: list[dict], reference_accuracy: float) -> str:
    lines = ["| model | seeds | " + " | ".join(COLUMNS) + " |", "|---|---|" + "---|" * len(COLUMNS)]
    for model, label in MODELS.items():
        members = [r for r in runs if r["model"] == model]
        if members:
            lines.append(f"| {label} | {len(members)} | " + " | ".join(mean_std([m[c] for m in members], ".3f", ".3f") for c in COLUMNS) + " |")
    groups = [len(v) for v in SHAPE_FACTORS.values()]
    chance = sum(1 / k for k in groups) / len(groups)
    lines.append(f"| chance | – | {chance:.3f} | {chance:.3f} | {1 / 144:.3f} | {1 / 144:.3f} | – | – |")
    lines.append(f"\nReference attribute classifier (all 144 combinations): accuracy {reference_accuracy:.3f} on its test split.")
    return "\n".join(lines) + "\n"


@torch.no_grad()
def unseen_figure(root: Path, out: Path) -> Path | None:
    runs = {m: root / m / "s0" for m in MODELS if (root / m / "s0").is_dir()}
    if len(runs) < len(MODELS):
        return None
    models = {m: load_model(run) for m, run in runs.items()}
    datamodule = load_run_data(runs["cvae1"], [], models["cvae1"].x_shape, models["cvae1"].y_dim)
    datamodule.setup()
    x, y = datamodule.splits["unseen"].tensors
    columns = [x[:, None]]
    for model in models.values():
        torch.manual_seed(0)
        columns.append(model.sample(y, 4).cpu())
    return save_image_grid(torch.cat(columns, dim=1), out / "unseen.png", scale=3)


def main() -> None:
    root, out = Path(sys.argv[1]), Path(sys.argv[2])
    runs = read(root)
    if not runs:
        raise SystemExit(f"no runs below {root}: run experiments/attributes/run.sh")
    write_dicts_csv(out / "results.csv", runs)
    reference = json.loads((root / "reference" / "results.json").read_text())["test/accuracy"]
    text = table(runs, reference)
    (out / "results.md").write_text(text)
    print(text)
    print(f"figure: {unseen_figure(root, out)}")
    for model in MODELS:
        for name in ("edit_shape", "samples"):
            source = root / model / "s0" / "generate" / f"{name}.png"
            if source.exists():
                shutil.copy(source, out / f"{name}_{model}.png")


if __name__ == "__main__":
    main()
