"""Assemble experiments/inference/results.md from the runs' evaluate/classify outputs.

    python experiments/inference/table.py SWEEP BASELINES.jsonl REFERENCE/results.json

Reads each run directory of SWEEP (evaluate/evaluation.json, classify/metrics.json and, where Bayes rule was also run
with the IWAE bound, classify_iwae/metrics.json) and prints the table, one row per run in name order, then the
scikit-learn baselines.
"""

import json
import sys
from pathlib import Path

from cvaezoo.collect import markdown_table, read_json
from cvaezoo.models import MODELS

#: how each model classifies by default (cvaezoo-classify without --method), by the first of its classifier_methods
CLASSIFIER_MODES = {"elbo": "Bayes rule, ELBO K={k}", "mc": "p(y|x), {k} z-samples", "classifier": "q(y|x)",
                    "exact": "p(y|x), one network"}


def classifier_mode(model: str) -> str:
    method, k = next(iter(MODELS[model].classifier_methods.items()))
    return CLASSIFIER_MODES[method].format(k=k)


sweep, baselines, reference = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
header = ["model", "test accuracy (classifier mode)", "accuracy, IWAE K=100 Bayes rule", "ECE",
          "conditional-generation accuracy", "test −ELBO (nats)", "test −IWAE K=100 (nats)"]
rows = []
for run in sorted(p for p in sweep.iterdir() if p.is_dir()):
    evaluation = read_json(run / "evaluate" / "evaluation.json")
    classify = read_json(run / "classify" / "metrics.json")
    iwae_file = run / "classify_iwae" / "metrics.json"
    iwae_acc = f"{read_json(iwae_file)['accuracy']:.3f}" if iwae_file.exists() else "–"
    generation = evaluation.get("generation_accuracy")
    rows.append([evaluation["model"], f"{classify['accuracy']:.3f} ({classifier_mode(evaluation['model'])})", iwae_acc,
                 f"{classify['ece']:.3f}", "–" if generation is None else f"{generation:.3f}",
                 f"{-evaluation['test/elbo']:.2f}", f"{-evaluation['test/iwae_k100']:.2f}"])
for line in baselines.read_text().splitlines():
    row = json.loads(line)
    rows.append([f"{row['model']} (scikit-learn)", f"{row['test/accuracy']:.3f}", *["–"] * 5])
print(markdown_table(header, rows), end="")
ref = read_json(reference)
print(f"\nReference classifier (scores generated samples): test accuracy {ref['test/accuracy']:.3f}.")
print("For CVAE-3 the bound is on log p(y|x), not log p(x|y).")
