"""Several completions per input, measured: best-of-S error, spread and distinct digits, for the quadrant runs of
run.sh (or diversity.sh), with the prior's temperature calibrated on the validation split.

    python experiments/quadrants/diversity.py runs/quadrants experiments/quadrants --reference runs/reference/mnist5k

For each row (nn, gsnn, cvae, hybrid, cvae_wd) and run <row>/q<Q>_s<seed>: S = 16 completions per test input (the means of
p(y|x,z), z ~ p(z|x)), scored by cvaezoo.sample_quality.completion_diversity; the prior's calibration
E_q[(z - mu_p)^2 / sigma_p^2] on each split (1 = as wide as the posteriors of those data; and its largest value
over latent dimensions on test); the Fréchet distance and precision / recall of the completed images of the first
draw against the true ones, in the reference's features; for CVAE and
hybrid also at the temperature T = sqrt(that mean on validation), with the prior-sampled -log p(y|x) at 1 and T.
Writes diversity.md, diversity.json and ambiguous_q<Q>.png.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

import torch

from cvaezoo.checkpoints import load_model, load_reference
from cvaezoo.collect import mean_std
from cvaezoo.inference import batches, prior_calibration
from cvaezoo.runs import load_run_data
from cvaezoo.sample_quality import completion_diversity
from cvaezoo.viz import save_image_grid

ROWS = {"nn": "NN (baseline)", "gsnn": "GSNN", "cvae": "CVAE", "hybrid": "hybrid (α = 0.5)",
        "cvae_wd": "CVAE, weight decay 1e-3"}
CALIBRATED = ("cvae", "hybrid", "cvae_wd")  # rows whose q(z|x,y) is trained, so that the prior can be compared with it
S = 16


@torch.no_grad()
def prior_sampled_nll(model, x: torch.Tensor, y: torch.Tensor, temperature: float, samples: int = 100) -> float:
    """-log (1/S) sum_s p(y|x,z_s), z_s ~ p(z|x) at ``temperature``: the predictive likelihood of the draws."""
    total = 0.0
    for xb, yb in zip(batches(x, 100), batches(y, 100)):
        z = model.prior(xb, None).rsample(samples, temperature)
        total -= float((torch.logsumexp(model.log_likelihood(z, xb, None, yb), 0) - math.log(samples)).sum())
    return total / len(x)


def score(run: Path, reference, row: str) -> tuple[dict, dict]:
    torch.manual_seed(0)
    model = load_model(run).eval()
    data = load_run_data(run, [], model.x_shape, model.y_dim)
    val_x, val_y = data.split_tensors("val")
    x, y = data.split_tensors("test")
    result = {"run": str(run), "seed": int(run.name.split("_s")[1])}
    temperatures = {"1": 1.0}
    if row in CALIBRATED:
        val_calibration, test_calibration = prior_calibration(model, val_x, val_y), prior_calibration(model, x, y)
        train_calibration = prior_calibration(model, *data.split_tensors("train"))
        result.update(calibration_train=float(train_calibration.mean()), calibration_val=float(val_calibration.mean()),
                      calibration_test=float(test_calibration.mean()), calibration_test_max=float(test_calibration.max()))
        temperatures["T"] = math.sqrt(float(val_calibration.mean()))
        result["temperature"] = temperatures["T"]
    draws = {}
    for name, temperature in temperatures.items():
        torch.manual_seed(1)
        scores = completion_diversity(model, x, y, S, data.complete, reference, temperature,
                                      control=data.split_tensors("train"))
        scores.pop("per_input")
        if model.has_latent:
            torch.manual_seed(2)
            scores["prior_sampled_nll"] = prior_sampled_nll(model, x, y, temperature)
        result[name] = scores
        torch.manual_seed(3)
        draws[name] = model.sample(x, 4, temperature=temperature)
    return result, {"x": x, "y": y, "draws": draws, "complete": data.complete}


def ambiguous_figure(examples: dict[str, dict], reference, path: Path) -> None:
    """Rows: the first test input of each digit (as the reference reads the true image) among those it cannot
    classify from the given quadrant alone; columns: the input, the truth, the NN, 4 GSNN draws, 4 CVAE draws
    (T = 1), 4 draws of the CVAE with weight decay at its calibrated T (seed 0)."""
    cvae = examples["cvae"]
    x, complete = cvae["x"], cvae["complete"]
    with torch.no_grad():
        unsure = torch.softmax(reference(x), -1).max(-1).values < 0.5
        digits = reference.classify(complete(x, cvae["y"]))
    pick = torch.tensor([int(torch.nonzero(unsure & (digits == d))[0]) for d in range(10) if (unsure & (digits == d)).any()])
    columns = [x[pick], complete(x[pick], cvae["y"][pick]), complete(x[pick], examples["nn"]["draws"]["1"][pick, 0])]
    for row, name in (("gsnn", "1"), ("cvae", "1"), ("cvae_wd", "T")):
        columns += [complete(x[pick], examples[row]["draws"][name][pick, j]) for j in range(4)]
    save_image_grid(torch.stack(columns, dim=1), path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument("--quadrants", type=int, default=1)
    args = parser.parse_args()
    reference = load_reference(args.reference)
    results: dict[str, list[dict]] = {}
    seed0: dict[str, dict] = {}
    for row in ROWS:
        for run in sorted((args.root / row).glob(f"q{args.quadrants}_s*")):
            result, examples = score(run, reference, row)
            results.setdefault(row, []).append(result)
            if result["seed"] == 0:
                seed0[row] = examples
    (args.out / "diversity.json").write_text(json.dumps(results, indent=1))
    header = ["row", "prior temperature", f"best-of-{S} error", "mean error", "distance between draws",
              "distinct digits", "distinct digits, ambiguous inputs", "−log p(y\\|x), prior draws (nats)",
              "Fréchet distance, first draw", "precision / recall, first draw",
              "prior calibration: train / val / test / test, widest dimension"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row, runs in results.items():
        for name in ("1", "T"):
            if name not in runs[0]:
                continue
            def cell(key, fmt=".4f", runs=runs, name=name):
                return mean_std([r[name][key] for r in runs if key in r[name]], fmt, ".2g")
            temperature = "1" if name == "1" else mean_std([r["temperature"] for r in runs], ".2f", ".2g")
            calibration = " / ".join(mean_std([r[f"calibration_{part}"] for r in runs], ".2f", ".2g")
                                     for part in ("train", "val", "test", "test_max")) if "calibration_val" in runs[0] else "–"
            ambiguous = statistics.mean(r[name]["ambiguous_inputs"] for r in runs)
            lines.append(f"| {ROWS[row]} | {temperature} | {cell('best_of_s_error')} | {cell('mean_error')} | "
                         f"{cell('pairwise_distance')} | {cell('distinct_classes', '.2f')} | "
                         f"{cell('distinct_classes_ambiguous', '.2f')} ({ambiguous:.0f} inputs) | "
                         f"{cell('prior_sampled_nll', '.1f')} | {cell('frechet_distance', '.2f')} | "
                         f"{cell('precision', '.3f')} / {cell('recall', '.3f')} | {calibration} |")
    seeds = sorted({r["seed"] for runs in results.values() for r in runs})
    text = (f"{args.quadrants} quadrant(s) given, test split, S = {S} draws per input, seeds {seeds} "
            f"(mean ± std over seeds).\n\n" + "\n".join(lines) + "\n")
    (args.out / "diversity.md").write_text(text)
    if {"nn", "gsnn", "cvae", "cvae_wd"} <= set(seed0):
        ambiguous_figure(seed0, reference, args.out / f"ambiguous_q{args.quadrants}.png")
    print(text)


if __name__ == "__main__":
    main()
