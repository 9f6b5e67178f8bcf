"""Assemble the quadrant-completion table and figures from the runs of experiments/quadrants/run.sh.

    python experiments/quadrants/table.py runs/quadrants experiments/quadrants

Reads <root>/<row>/q<n>_s<seed>/evaluate/evaluation.json (written by ``cvaezoo-evaluate --iwae-samples 100``)
and writes results.md / results.csv (test -log p(y|x), nats per image, mean ± std over seeds, (number of seeds)) and
completions_q<n>.png (seed 0): input, truth, the NN's prediction, then draws of each latent model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from cvaezoo.checkpoints import load_model
from cvaezoo.collect import mean_std, write_dicts_csv
from cvaezoo.runs import load_run_data
from cvaezoo.viz import save_image_grid

ROWS = {  # run folder -> row label
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
    rows = []
    for row in ROWS:
        for path in sorted((root / row).glob("q*_s*/evaluate/evaluation.json")):
            quadrants, seed = path.parts[-3][1:].split("_s")
            evaluation = json.loads(path.read_text())
            rows.append({"row": row, "given_quadrants": int(quadrants), "seed": int(seed),
                         "cnll_s100": evaluation["test/cnll_s100"], "run_dir": str(path.parent.parent)})
    return rows


def table(runs: list[dict]) -> str:
    lines = ["| model | " + " | ".join(f"{q} quadrant{'s' * (q > 1)} given" for q in QUADRANTS) + " |",
             "|---|" + "---|" * len(QUADRANTS)]
    for row, label in ROWS.items():
        cells = []
        for q in QUADRANTS:
            values = [r["cnll_s100"] for r in runs if r["row"] == row and r["given_quadrants"] == q]
            cells.append(mean_std(values, ".2f", ".2f") + (f" ({len(values)})" if values else ""))
        if any(c != "–" for c in cells):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


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
