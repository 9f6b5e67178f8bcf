"""How far the ELBO plug-in of Bayes rule is from the bound it stands for, class by class.

    python experiments/bayes_gap/gap.py OUT.json RUN [RUN ...] [--k 1000] [--n 500]

Classifier mode of CVAE-1/2/4 puts log p(x|y) ~ ELBO(x, y) into Bayes rule for every class y. The encoder
q(z|x,y) was trained only on pairs (x, true y): at the other classes it was never trained, so the ELBO's gap to
log p(x|y) may be larger there, and the ELBO classifier then prefers the true class partly because its
posterior is better, not because p(x|y) is larger. This measures, per test digit and class, the ELBO (10 draws,
classifier mode's default) and the importance-weighted bound with K draws (close to log p(x|y)), twice with
independent noise (the estimate's own noise), and reports the gap IWAE - ELBO at the true class and at the other
classes, and how often Bayes rule over the two bounds disagrees.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from cvaezoo.checkpoints import load_model
from cvaezoo.inference import batches
from cvaezoo.runs import load_run_data


@torch.no_grad()
def bounds(model, x: torch.Tensor, method: str, k: int, seed: int, batch_size: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.cat([model.class_bounds(b, samples=k, method=method) for b in batches(x, batch_size)])


def quantiles(values: torch.Tensor) -> dict[str, float]:
    q = torch.quantile(values.double(), torch.tensor([0.1, 0.5, 0.9], dtype=torch.double))
    return {"mean": float(values.mean()), "p10": float(q[0]), "median": float(q[1]), "p90": float(q[2])}


def measure(run: Path, k: int, n: int) -> dict:
    model = load_model(run).eval()
    data = load_run_data(run, [], model.x_shape, model.y_dim)
    x, y = data.split_tensors("test")
    pick = torch.linspace(0, len(x) - 1, min(n, len(x))).long()  # spread over the class-grouped split
    x, y = x[pick], y[pick]
    elbo = bounds(model, x, "elbo", 10, 0, 100)
    iwae = bounds(model, x, "iwae", k, 1, max(1, 20000 // k))
    iwae_again = bounds(model, x, "iwae", k, 2, max(1, 20000 // k))
    prior = model.log_class_prior.cpu()
    true = torch.nn.functional.one_hot(y, model.y_dim).bool()
    gap = iwae - elbo
    elbo_prediction, iwae_prediction = (elbo + prior).argmax(1), (iwae + prior).argmax(1)
    # the margin of the true class over the best other class, under each bound
    def margin(b: torch.Tensor) -> torch.Tensor:
        return b[true] - b.masked_fill(true, -torch.inf).max(1).values

    return {
        "run": str(run), "model": model.model_name, "n": len(x), "k": k,
        "gap_true_class": quantiles(gap[true]), "gap_other_classes": quantiles(gap[~true]),
        "gap_difference_per_image": quantiles(gap[true] - gap.masked_fill(true, 0).sum(1) / (model.y_dim - 1)),
        "iwae_noise_sd": float((iwae - iwae_again).std() / 2**0.5),
        "accuracy_elbo": float((elbo_prediction == y).float().mean()),
        "accuracy_iwae": float((iwae_prediction == y).float().mean()),
        "accuracy_iwae_other_noise": float(((iwae_again + prior).argmax(1) == y).float().mean()),
        "disagree": float((elbo_prediction != iwae_prediction).float().mean()),
        "margin_elbo": quantiles(margin(elbo)), "margin_iwae": quantiles(margin(iwae)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--n", type=int, default=500)
    args = parser.parse_args()
    rows = []
    for run in args.runs:
        rows.append(measure(run, args.k, args.n))
        row = rows[-1]
        print(f"{row['model']} {run}: gap true {row['gap_true_class']['median']:.2f}, other "
              f"{row['gap_other_classes']['median']:.2f} nats (median); accuracy ELBO {row['accuracy_elbo']:.3f}, "
              f"IWAE {row['accuracy_iwae']:.3f}; disagree {row['disagree']:.3f}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))
    for model in sorted({r["model"] for r in rows}):
        group = [r for r in rows if r["model"] == model]
        print(model, {key: statistics.fmean(r[key]["median"] if isinstance(r[key], dict) else r[key] for r in group)
                      for key in ("gap_true_class", "gap_other_classes", "accuracy_elbo", "accuracy_iwae", "disagree")})


if __name__ == "__main__":
    main()
