"""Attacks a reviewer would accept (#29), on one trained classifier, written as JSON: per eps, the accuracy under
each attack family, the per-example worst case over all of them, and the robust accuracy with detection (right
or rejected) under the detection-aware attack.

Usage: python experiments/robustness/adaptive.py RUN_DIR --out-dir DIR [--transfer-from BASELINE_RUN]
          [--n-attack 100] [--steps 100] [--restarts 2] [--method M --samples K] [--fresh-draws 10]

Attack families (cvaezoo/robustness.py), all L-infinity in [0, 1]:
  fgsm; pgd (cross-entropy, --steps of 2.5 eps / steps, --restarts random starts, each example's worst);
  pgd_margin (the same on Carlini & Wagner's margin); pgd_eot (stochastic classifiers: the gradient averaged over
  4 draws of the model's noise per step, fixed so the best iterate is not chosen by a lucky draw); aware (the margin minus a hinge on the default detector's margin,
  Carlini & Wagner 2017: it fools the classifier while keeping the score above the threshold); logit matching
  (Tramer et al. 2020: drive the class scores to those of a clean test image of another class); transfer (PGD
  crafted on --transfer-from, the discriminative network, then classified here).
The detector is the model's default rejection score (log p(x) for models of x, max p(y|x) otherwise) at a
threshold rejecting 5 % of clean validation images, as `cvaezoo-classify --reject 0.05` uses it.
Accuracy of a stochastic classifier is its worst case over --fresh-draws fresh draws of its noise: an example
counts as right only if every draw classifies it right.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import yaml
from li2019 import spread  # this folder's scripts
from study import attacked

from cvaezoo.checkpoints import load_model
from cvaezoo.inference import batches, predict_proba
from cvaezoo.robustness import (
    class_scores,
    classifier_loss,
    fgsm,
    fixed_noise,
    log_px_margin,
    logit_matching_loss,
    max_prob_margin,
    pgd,
    rejection_threshold,
    score_names,
    scores_and_predictions,
    with_detector_hinge,
)
from cvaezoo.runs import load_run_data

EPSILONS = (0.05, 0.1, 0.2, 0.3, 0.5)  # 0.5: the sanity row, where every classifier should be near 0
FALSE_REJECTION = 0.05
HINGE_WEIGHT = 10.0


def study(run_dir: Path, transfer_from: Path | None, n_attack: int, steps: int, restarts: int, method: str | None,
          samples: int | None, fresh_draws: int) -> dict:
    config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    seed = int(config["seed"])
    model = load_model(run_dir).eval()
    data = load_run_data(run_dir, [], model.x_shape, model.y_dim)
    mode = model.classifier_mode(method, samples)
    predict = {"method": mode.method, "samples": mode.samples or None}
    stochastic = bool(mode.samples)
    attacker = {**predict, "samples": 1 if stochastic else None}  # one fixed draw per gradient
    detector = score_names(model)[0]
    started = time.time()

    val_x, _ = data.split_tensors("val")
    threshold = rejection_threshold(scores_and_predictions(model, val_x, **predict, seed=seed)[0][detector],
                                    FALSE_REJECTION)
    margin_of = (log_px_margin(model, threshold, samples=10, seed=seed) if detector == "log_px"
                 else max_prob_margin(model, threshold, seed=seed, **predict))  # the detector as evaluated
    x, y = data.split_tensors("test")
    pick = spread(n_attack, len(x))
    x, y = x[pick], y[pick]

    def right(inputs: torch.Tensor) -> torch.Tensor:
        """Right under every one of the fresh draws (one for a deterministic classifier)."""
        ok = torch.ones(len(inputs), dtype=torch.bool)
        for draw in range(fresh_draws if stochastic else 1):
            with fixed_noise(10_000 + draw, inputs.device):  # the evaluation's own noise, not the attacker's
                ok &= predict_proba(model, inputs, **predict).argmax(1) == y
        return ok

    def flagged(inputs: torch.Tensor) -> torch.Tensor:
        return scores_and_predictions(model, inputs, **predict, seed=seed)[0][detector] < threshold

    # logit matching targets: the scores of a clean test image of the next class
    with torch.no_grad(), fixed_noise(seed, x.device):
        scores = torch.cat([class_scores(model, b, **attacker) for b in batches(x, 100)])
    target_index = torch.tensor([int(((y == (label + 1) % model.y_dim)).nonzero()[0]) for label in y.tolist()])
    targets = scores[target_index]

    ce = classifier_loss(model, seed=seed, **attacker)
    margin = classifier_loss(model, seed=seed, objective="margin", **attacker)
    aware = with_detector_hinge(margin, margin_of, HINGE_WEIGHT)
    matching = logit_matching_loss(model, seed=seed, **attacker)
    generator = torch.Generator().manual_seed(seed)
    families = {
        "fgsm": lambda eps: attacked(fgsm, ce, x, y, eps),
        "pgd": lambda eps: attacked(pgd, ce, x, y, eps, steps=steps, restarts=restarts, generator=generator),
        "pgd_margin": lambda eps: attacked(pgd, margin, x, y, eps, steps=steps, restarts=restarts,
                                             generator=generator),
        "aware": lambda eps: attacked(pgd, aware, x, y, eps, steps=steps, restarts=restarts, generator=generator),
        "logit_matching": lambda eps: attacked(pgd, matching, x, targets, eps, steps=steps, generator=generator),
    }
    if stochastic:
        # four fixed draws (seeds seed+100...): averaged, and deterministic so the best iterate is not a lucky draw
        eot = classifier_loss(model, seed=seed + 100, eot=4, **attacker)
        families["pgd_eot"] = lambda eps: attacked(pgd, eot, x, y, eps, steps=steps, generator=generator)
    if transfer_from is not None:
        source = load_model(transfer_from).eval()
        source_loss = classifier_loss(source, seed=seed)
        families["transfer"] = lambda eps: attacked(pgd, source_loss, x, y, eps, steps=steps, restarts=restarts,
                                                      generator=generator)

    clean_right, clean_flagged = right(x), flagged(x)
    result: dict = {"model": model.model_name, "seed": seed, "run": str(run_dir), "n_attack": len(x),
                    "predict": predict, "attacker": attacker, "detector": detector, "threshold": threshold,
                    "steps": steps, "restarts": restarts, "fresh_draws": fresh_draws if stochastic else 1,
                    "transfer_from": str(transfer_from) if transfer_from else None,
                    "clean": {"accuracy": float(clean_right.float().mean()),
                              "flagged": float(clean_flagged.float().mean()),
                              "right_or_flagged": float((clean_right | clean_flagged).float().mean())},
                    "rows": []}
    for eps in EPSILONS:
        row: dict = {"eps": eps}
        worst = clean_right.clone()
        worst_with_detection = clean_right | clean_flagged
        for name, attack in families.items():
            adv = attack(eps)
            ok, caught = right(adv), flagged(adv)
            row[name] = {"accuracy": float(ok.float().mean()),
                         "fooled_unflagged": int((clean_right & ~ok & ~caught).sum()),
                         "right_or_flagged": float((ok | caught).float().mean())}
            worst &= ok
            worst_with_detection &= ok | caught
        row["worst"] = {"accuracy": float(worst.float().mean()),
                        "right_or_flagged": float(worst_with_detection.float().mean())}
        result["rows"].append(row)
        print(f"{model.model_name} eps {eps}: " + ", ".join(f"{k} {v['accuracy']:.2f}" for k, v in row.items()
                                                           if k != "eps"), flush=True)
    result["seconds"] = time.time() - started
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--transfer-from", type=Path, default=None, help="a run of the discriminative network")
    parser.add_argument("--n-attack", type=int, default=100)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--restarts", type=int, default=2)
    parser.add_argument("--method", default=None, help="classifier mode (default: the model's)")
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--fresh-draws", type=int, default=10)
    args = parser.parse_args()
    result = study(args.run, args.transfer_from, args.n_attack, args.steps, args.restarts, args.method, args.samples,
                   args.fresh_draws)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    method = result["predict"]["method"]
    (args.out_dir / f"{result['model']}_{method}_s{result['seed']}.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
