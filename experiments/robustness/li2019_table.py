"""The tables of Li et al.'s protocol from li2019.py's JSON files: accuracy under each attack and eps, and the
fraction of successful attacks each detector flags.

Usage: python experiments/robustness/li2019_table.py DIR     (reads DIR/*.json, writes DIR/../<DIR name>.md)

Every accuracy carries its standard error: the binomial error of the attacked images, combined with the seeds'
spread when there are several seeds (var = spread^2 / seeds + mean binomial variance / seeds). A detection rate
carries its binomial error over the successful attacks it is a fraction of (their count in brackets). Binomial
errors are Agresti and Coull's (one standard error: p~ = (k + 1/2) / (n + 1), var = p~ (1 - p~) / (n + 1)), so that
0 of 50 is 0.000 ± 0.014, not an exact 0.000 ± 0.000.
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from pathlib import Path

#: Li et al.'s order: generative fully connected, discriminative fully connected, then the bottleneck ones
ORDER = ["gfz", "gfy", "dfz", "dfx", "gbz", "gby", "dbx", "baseline"]
NAMES = {"gfz": "GFZ", "gfy": "GFY (CVAE-1)", "dfz": "DFZ", "dfx": "DFX (CVAE-3)", "gbz": "GBZ", "gby": "GBY (CVAE-4)",
         "dbx": "DBX", "baseline": "NN (discriminative)"}
DETECTORS = {"log_px": "marginal log p(x)", "log_px_given_y": "logit log p(x, ŷ), per class",
             "kl": "KL(m_ŷ ‖ p(y|x)), per class"}


def binomial_variance(p: float, n: int) -> float:
    """The variance of a rate p measured on n examples, Agresti-Coull adjusted for one standard error (z = 1): never
    0 at p = 0 or 1."""
    adjusted = (p * n + 0.5) / (n + 1)
    return adjusted * (1 - adjusted) / (n + 1)


def accuracy_cell(values: list[float], n: int) -> str:
    """Mean over seeds ± its standard error (seeds' spread and binomial error of n images)."""
    mean = sum(values) / len(values)
    binomial = sum(binomial_variance(v, n) for v in values) / len(values)
    spread = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return f"{mean:.3f} ± {math.sqrt((spread + binomial) / len(values)):.3f}"


def rate_cell(rates: list[float | None], counts: list[int]) -> str:
    """Pooled over seeds: flagged / successful attacks, ± binomial error, (successful attacks)."""
    total = sum(counts)
    if total == 0:
        return "– (0)"
    p = sum((r or 0.0) * k for r, k in zip(rates, counts)) / total
    return f"{p:.2f} ± {math.sqrt(binomial_variance(p, total)):.2f} ({total})"


def tables(results: list[dict]) -> str:
    runs = defaultdict(list)
    for r in results:
        runs[r["model"]].append(r)
    models = [m for m in ORDER if m in runs] + sorted(set(runs) - set(ORDER))
    columns = [(row["attack"], row["eps"]) for row in results[0]["rows"]]
    seeds = sorted({r["seed"] for r in results})
    first = results[0]
    classifier_k = next((r["predict"]["samples"] for r in results if r["predict"]), "-")
    lines = [f"Seeds {', '.join(map(str, seeds))}; {first['epochs']} epochs; n test images attacked (per model, "
             f"spread evenly over the test split), thresholds on {first['n_train']} training images; the attacker's bound takes "
             f"{first['attack_samples']} importance sample(s), the classifier {classifier_k} (the NN: its one prediction).", "",
             "## Accuracy", "",
             "| model | n | clean | " + " | ".join(f"{a.upper()} ε = {e}" for a, e in columns) + " |",
             "|---" * (len(columns) + 3) + "|"]
    for m in models:
        rs = runs[m]
        cells = [accuracy_cell([r["clean_accuracy"] for r in rs], rs[0]["n_attack"])]
        for i in range(len(columns)):
            cells.append(accuracy_cell([r["rows"][i]["accuracy"] for r in rs], rs[0]["n_attack"]))
        lines.append(f"| {NAMES.get(m, m)} | {rs[0]['n_attack']} | " + " | ".join(cells) + " |")
    for detector, title in DETECTORS.items():
        lines += ["", f"## Detection: {title}", "",
                  "Fraction of the successful attacks (right when clean, wrong attacked) flagged, at a threshold that "
                  "flags 5 % of the training images; the flagged fraction of clean training and test images beside.",
                  "", "| model | train | clean test | " + " | ".join(f"{a.upper()} {e}" for a, e in columns) + " |",
                  "|---" * (len(columns) + 3) + "|"]
        for m in models:
            rs = runs[m]
            if detector not in rs[0]["clean_flagged"]:
                lines.append(f"| {NAMES.get(m, m)} | n/a | n/a | " + " | ".join("n/a" for _ in columns) + " |")
                continue
            train = sum(r["train_flagged"][detector] for r in rs) / len(rs)
            clean = sum(r["clean_flagged"][detector] for r in rs) / len(rs)
            cells = [rate_cell([r["rows"][i]["detected"].get(detector) for r in rs], [r["rows"][i]["fooled"] for r in rs])
                     for i in range(len(columns))]
            lines.append(f"| {NAMES.get(m, m)} | {train:.3f} | {clean:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    folder = Path(sys.argv[1])
    results = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    if not results:
        raise SystemExit(f"no results in {folder}")
    out = folder.parent / f"{folder.name}.md"
    out.write_text(f"# Li et al.'s protocol: {folder.name}\n\n" + tables(results))
    print(out.read_text())


if __name__ == "__main__":
    main()
