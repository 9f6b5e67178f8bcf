"""Li, Bradshaw & Sharma (2019)'s attacks and detectors on one run trained with experiment=li2019, written as JSON.
See README.md beside this file ("Li et al.'s protocol") for what differs from theirs.

Usage: python experiments/robustness/li2019.py RUN_DIR --out-dir DIR [--n-attack 100] [--n-train 1000]
          [--attack-samples 1]
writes DIR/<model>_s<seed>.json (the model as the command named it: model=dfx trains CVAE-3's class): clean accuracy, then per attack and eps the accuracy, the successful attacks and the
fraction of them each detector flags, with the detectors' false-positive rate on clean test images.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import yaml
from study import attacked  # this folder's zoo study

from cvaezoo.checkpoints import load_model
from cvaezoo.inference import predict_proba
from cvaezoo.robustness import (
    class_thresholds,
    classifier_loss,
    fgsm,
    mean_class_softmax,
    mim,
    pgd,
    rejected,
    rejection_threshold,
    scores_and_predictions,
)
from cvaezoo.runs import load_run_data

EPSILONS = (0.1, 0.2, 0.3)
FALSE_POSITIVE = 0.05  # of training images, for every detector
K = 10  # Li et al.'s importance samples for classification and for the detectors' bounds
#: the detectors: score name -> whether it has one threshold per (predicted) class
DETECTORS = {"log_px": False, "log_px_given_y": True, "kl": True}


def classify_kwargs(model) -> dict:
    """Li et al.'s classifier: softmax over classes of the K = 10 importance-weighted bound (every model that has
    one; the discriminative network has one deterministic prediction)."""
    return {"method": "iwae", "samples": K} if "iwae" in model.classifier_methods else {}


def attacks(generator: torch.Generator) -> dict:
    """Li et al.'s three attacks: FGSM; PGD, 40 steps of 0.01 from a uniform random start; MIM, 100 steps of 0.01,
    decay 1 (each keeps its highest-loss iterate, which theirs do not: at least as strong)."""
    return {"fgsm": (fgsm, {}), "pgd": (pgd, {"steps": 40, "step_size": 0.01, "generator": generator}),
            "mim": (mim, {"steps": 100, "step_size": 0.01, "decay": 1.0})}


def model_key(run_dir: Path) -> str:
    """The model the training command named (model=dfx, whose checkpoint records CVAE-3's class)."""
    overrides = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())
    return next(o.split("=", 1)[1] for o in overrides if o.startswith("model="))


def spread(n: int, total: int) -> torch.Tensor:
    return torch.linspace(0, total - 1, min(n, total)).long()


def study(run_dir: Path, n_attack: int, n_train: int, attack_samples: int, only: tuple[str, ...] | None = None,
          epsilons: tuple[float, ...] = EPSILONS, batch: int = 100) -> dict:
    config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    seed = int(config["seed"])
    model = load_model(run_dir).eval()
    data = load_run_data(run_dir, [], model.x_shape, model.y_dim)
    predict = classify_kwargs(model)
    score_kwargs = {**predict, "bound_samples": K, "bound_method": "iwae", "seed": seed}
    started = time.time()

    train_x, train_y = data.split_tensors("train")
    pick = spread(n_train, len(train_x))  # the split is grouped by class: spread evenly over it
    train_x, train_y = train_x[pick], train_y[pick]
    torch.manual_seed(seed)
    class_softmax = mean_class_softmax(predict_proba(model, train_x, **predict).log(), train_y)
    train_scores, train_predicted = scores_and_predictions(model, train_x, class_softmax=class_softmax, **score_kwargs)
    thresholds = {name: class_thresholds(train_scores[name], train_predicted, model.y_dim, FALSE_POSITIVE)
                  if per_class else torch.tensor(rejection_threshold(train_scores[name], FALSE_POSITIVE))
                  for name, per_class in DETECTORS.items() if name in train_scores}

    def flagged(x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        scores, predicted = scores_and_predictions(model, x, class_softmax=class_softmax, **score_kwargs)
        return predicted, {name: rejected(scores[name], predicted, t) for name, t in thresholds.items()}

    x, y = data.split_tensors("test")
    pick = spread(n_attack, len(x))
    x, y = x[pick], y[pick]
    predicted, clean_flags = flagged(x)
    clean_right = predicted == y
    result: dict = {
        "model": model_key(run_dir), "class": model.model_name, "seed": seed, "run": str(run_dir), "epochs": int(config["trainer"]["max_epochs"]),
        "n_attack": len(x), "n_train": len(train_x), "predict": predict, "attack_samples": attack_samples,
        "clean_accuracy": float(clean_right.float().mean()),
        "clean_flagged": {name: float(f.float().mean()) for name, f in clean_flags.items()},
        "train_flagged": {name: float(rejected(train_scores[name], train_predicted, t).float().mean())
                          for name, t in thresholds.items()},
        "rows": []}
    # the attacker follows the same bound with fewer draws (fixed by the seed), so each gradient costs less
    attacker = {**predict, "samples": min(attack_samples, K)} if predict else {}
    loss = classifier_loss(model, seed=seed, **attacker)
    generator = torch.Generator().manual_seed(seed)
    for name, (attack, kwargs) in attacks(generator).items():
        if only and name not in only:
            continue
        for eps in epsilons:
            adv = attacked(attack, loss, x, y, eps, batch=batch, **kwargs)
            predicted, flags = flagged(adv)
            fooled = clean_right & (predicted != y)
            result["rows"].append({
                "attack": name, "eps": eps, "accuracy": float((predicted == y).float().mean()),
                "fooled": int(fooled.sum()), "clean_right": int(clean_right.sum()),
                "detected": {d: float(f[fooled].float().mean()) if fooled.any() else None for d, f in flags.items()}})
            print(f"{result['model']} {name} eps {eps}: accuracy {result['rows'][-1]['accuracy']:.3f}", flush=True)
    result["seconds"] = time.time() - started
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--n-attack", type=int, default=100, help="test images attacked (spread evenly over the split)")
    parser.add_argument("--n-train", type=int, default=1000, help="training images the thresholds are set on")
    parser.add_argument("--attack-samples", type=int, default=1, help="importance samples of the attacker's bound")
    parser.add_argument("--attacks", nargs="+", choices=["fgsm", "pgd", "mim"], default=None, help="default: all")
    parser.add_argument("--eps", type=float, nargs="+", default=list(EPSILONS))
    args = parser.parse_args()
    result = study(args.run, args.n_attack, args.n_train, args.attack_samples, args.attacks, tuple(args.eps))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{result['model']}_s{result['seed']}.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
