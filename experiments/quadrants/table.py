"""Assemble the quadrant-completion table and figures from the runs of experiments/quadrants/run.sh.

    python experiments/quadrants/table.py runs/quadrants experiments/quadrants

Reads <root>/<row>/q<n>_s<seed>/evaluate/evaluation.json (written by ``cvaezoo-evaluate --iwae-samples 100``)
and writes results.md / results.csv (test -log p(y|x), nats per image, mean ± std over seeds, (number of seeds)) and
completions_q<n>.png (seed 0): input, truth, the NN's prediction, then draws of each latent model.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import torch

from cvaezoo.checkpoints import load_model
from cvaezoo.collect import markdown_table, mean_std, read_json, seed_dirs, write_dicts_csv
from cvaezoo.runs import load_run_data
from cvaezoo.viz import save_image_grid

ROWS = {  # run folder -> row label (the study's arms: configurations of CVAE-3 and the baseline, not registry models)
    "nn": "NN (baseline)",
    "gsnn": "GSNN",
    "cvae": "CVAE",
    "hybrid": "hybrid (α = 0.5)",
    "cvae_nninit": "CVAE, p(z|x) initialised from NN",
}
QUADRANTS = (1, 2, 3)
DRAWS = 4  # completions per latent model in the figure
EXAMPLES = 8  # test inputs in the figure


def read(root: Path) -> list[dict]:
    """One row per evaluated run <root>/<row>/q<n>_s<seed>, by row, then quadrants given, then seed."""
    rows = []
    for row in ROWS:
        for name, seed, run in seed_dirs(root / row):
            given, path = re.fullmatch(r"q(\d+)", name), run / "evaluate" / "evaluation.json"
            if given and path.exists():
                rows.append({"row": row, "given_quadrants": int(given[1]), "seed": seed,
                             "cnll_s100": read_json(path)["test/cnll_s100"], "run_dir": str(run)})
    return rows


def table(runs: list[dict]) -> str:
    rows = []
    for row, label in ROWS.items():
        cells = []
        for q in QUADRANTS:
            values = [r["cnll_s100"] for r in runs if r["row"] == row and r["given_quadrants"] == q]
            cells.append(mean_std(values, ".2f", ".2f") + (f" ({len(values)})" if values else ""))
        if any(c != "–" for c in cells):
            rows.append([label, *cells])
    return markdown_table(["model", *(f"{q} quadrant{'s' * (q > 1)} given" for q in QUADRANTS)], rows)


@torch.no_grad()
def completion_figure(root: Path, quadrants: int, out: Path) -> Path | None:
    """Rows: test inputs. Columns: input, truth, NN, then DRAWS completions of GSNN, CVAE and hybrid."""
    run = root / "nn" / f"q{quadrants}_s0"
    if not run.is_dir():
        return None
    nn_model = load_model(run)
    datamodule = load_run_data(run, [], nn_model.x_shape, nn_model.y_dim)
    datamodule.setup()
    x, y = datamodule.splits["test"].tensors
    pick = torch.linspace(0, len(x) - 1, EXAMPLES).long()
    x, y = x[pick], y[pick]
    columns = [x, datamodule.complete(x, y), datamodule.complete(x, nn_model.sample(x, 1)[:, 0])]
    for row in ("gsnn", "cvae", "hybrid"):
        run = root / row / f"q{quadrants}_s0"
        if run.is_dir():
            torch.manual_seed(0)
            draws = load_model(run).sample(x, DRAWS)
            columns += [datamodule.complete(x, draws[:, i]) for i in range(DRAWS)]
    return save_image_grid(torch.stack(columns, dim=1), out / f"completions_q{quadrants}.png")


def main() -> None:
    root, out = Path(sys.argv[1]), Path(sys.argv[2])
    runs = read(root)
    if not runs:
        raise SystemExit(f"no evaluate/evaluation.json below {root}: run experiments/quadrants/run.sh")
    write_dicts_csv(out / "results.csv", runs)
    text = table(runs)
    (out / "results.md").write_text(text)
    print(text)
    for q in QUADRANTS:
        path = completion_figure(root, q, out)
        if path:
            print(f"figure: {path}")


if __name__ == "__main__":
    main()
