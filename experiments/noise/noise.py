"""Classifier mode under pixel noise, and why it breaks (experiments/noise/run.sh).

    python experiments/noise/noise.py VARIANT_DIR... --out experiments/noise

Each VARIANT_DIR holds runs <model>_s<seed>. For each run, the 500 grey test digits of its data with uniform +-0.05,
Gaussian sigma = 0.05 or uniform +-0.1 noise (clipped to [0, 1], one draw, seed 1) are written as a .npy batch and
classified by cvaezoo.tools.classification(run, images=[...]), what cvaezoo-classify --images runs: the run's own
preprocessing (the Bernoulli draw of a binarised run), its default classifier mode (the ELBO, 10 draws per class).
The mechanism, under +-0.05 and with the same draws of z for every input (common random numbers): the median clean
margin (the true class's bound minus the best other's, nats), the median fall of the true class's bound, and how often
the true class's bound falls furthest of all the classes' (the class surest of the clean background pays most), and
the median spread of the falls over the classes (what the noise can move between them).
Writes results.md and results.csv (one row per run).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from cvaezoo.collect import mean_std, seed_dirs, write_dicts_csv
from cvaezoo.robustness import PIXEL_NOISES, random_noise
from cvaezoo.tools import classification
from cvaezoo.trained_run import TrainedRun

NOISES = {"uniform ±0.05": PIXEL_NOISES["uniform_0.05"], "Gaussian σ 0.05": PIXEL_NOISES["gaussian_0.05"],
          "uniform ±0.1": PIXEL_NOISES["uniform_0.1"]}
MECHANISM_NOISE = "uniform ±0.05"


def accuracy(run: TrainedRun, images: torch.Tensor, labels: torch.Tensor, folder: Path) -> float:
    path = folder / "batch.npy"
    np.save(path, images.numpy())
    torch.manual_seed(0)
    probs = classification(run, images=[str(path)]).probs
    return float((probs.argmax(1) == labels).float().mean())


@torch.no_grad()
def mechanism(run: TrainedRun, clean: torch.Tensor, corrupted: torch.Tensor, labels: torch.Tensor, folder: Path) -> dict:
    """Margins and falls of the class bounds between the clean and the corrupted digits, both preprocessed as the CLI
    does and bounded with the same posterior noise."""
    model = run.model
    bounds = []
    for images in (clean, corrupted):
        path = folder / "batch.npy"
        np.save(path, images.numpy())
        _, x = run.new_inputs([str(path)])
        torch.manual_seed(0)
        bounds.append(torch.cat([model.class_bounds(b, samples=10) for b in x.split(250)]))
    before, after = bounds
    rows = torch.arange(len(labels))
    true_before = before[rows, labels]
    others = before.clone()
    others[rows, labels] = -torch.inf
    fall = before - after  # (N, C)
    return {"clean margin (nats, median)": float((true_before - others.max(1).values).median()),
            "fall of the true class's bound (nats, median)": float(fall[rows, labels].median()),
            "spread of the falls over classes (nats, median)": float((fall.max(1).values - fall.min(1).values).median()),
            "true class falls furthest": float((fall.argmax(1) == labels).float().mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants:
            for name, seed, path in seed_dirs(variant):
                run = TrainedRun.open(path)
                x, y = run.data("data.binarize=none").split_tensors("test")  # the grey digits, before any binarisation
                row = {"variant": variant.name, "model": name, "seed": seed,
                       "pixel_outlier_weight": float(run.model.hparams.pixel_outlier_weight),
                       "test −ELBO (nats)": -json.loads((path / "results.json").read_text())["test/elbo"],
                       "clean": accuracy(run, x, y, Path(tmp))}
                for label, (kind, size) in NOISES.items():
                    row[label] = accuracy(run, random_noise(x, kind, size), y, Path(tmp))
                row.update(mechanism(run, x, random_noise(x, *NOISES[MECHANISM_NOISE]), y, Path(tmp)))
                rows.append(row)
                print(json.dumps(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    write_dicts_csv(args.out / "results.csv", rows)
    (args.out / "results.md").write_text(table(rows))


def table(rows: list[dict]) -> str:
    """Mean ± std over seeds per (variant, model): accuracies, each noisy one also as a share of the clean one, the
    bound and the mechanism."""
    columns = ["clean", *NOISES, "test −ELBO (nats)", "clean margin (nats, median)",
               "fall of the true class's bound (nats, median)", "spread of the falls over classes (nats, median)",
               "true class falls furthest"]
    lines = ["| variant | model | w | " + " | ".join(columns) + " |", "|---|---|---|" + "---|" * len(columns)]
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["variant"], row["model"]), []).append(row)
    for (variant, model), runs in groups.items():
        cells = []
        for column in columns:
            cell = mean_std([r[column] for r in runs], ".3f", ".3f") if "nats" not in column else \
                mean_std([r[column] for r in runs], ".1f", ".1f")
            if column in NOISES:
                cell += f" ({mean_std([r[column] / r['clean'] for r in runs], '.0%', '.0%')})"
            cells.append(cell)
        lines.append(f"| {variant} | {model} | {runs[0]['pixel_outlier_weight']:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
