"""Assemble experiments/inference/results.md from the runs' evaluate/classify outputs."""

import json
import sys
from pathlib import Path

sweep, baselines, reference = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
print("| model | test accuracy (classifier mode) | accuracy, IWAE K=100 Bayes rule | ECE | conditional-generation accuracy | test −ELBO (nats) | test −IWAE K=100 (nats) |")
print("|---|---|---|---|---|---|---|")
for run in sorted(p for p in sweep.iterdir() if p.is_dir()):
    evaluation = json.loads((run / "evaluate" / "evaluation.json").read_text())
    classify = json.loads((run / "classify" / "metrics.json").read_text())
    iwae_file = run / "classify_iwae" / "metrics.json"
    iwae_acc = f"{json.loads(iwae_file.read_text())['accuracy']:.3f}" if iwae_file.exists() else "–"
    generation = evaluation.get("generation_accuracy")
    how = "p(y|x), 100 z-samples" if evaluation["model"] == "cvae3" else "Bayes rule, ELBO K=10"
    print(
        f"| {evaluation['model']} | {classify['accuracy']:.3f} ({how}) | {iwae_acc} | {classify['ece']:.3f} | "
        f"{'–' if generation is None else f'{generation:.3f}'} | {-evaluation['test/elbo']:.2f} | {-evaluation['test/iwae_k100']:.2f} |"
    )
for line in baselines.read_text().splitlines():
    row = json.loads(line)
    print(f"| {row['model']} (scikit-learn) | {row['test/accuracy']:.3f} | – | – | – | – | – |")
ref = json.loads(reference.read_text())
print(f"\nReference classifier (scores generated samples): test accuracy {ref['test/accuracy']:.3f}.")
print("For CVAE-3 the bound is on log p(y|x), not log p(x|y).")
