"""Attack, detection and out-of-distribution scores of one trained classifier (a run directory of the sweep in
run.sh), written as JSON. See README.md beside this file for the protocol.

Usage: python experiments/robustness/study.py RUN_DIR --out-dir DIR [--n-attack 200] [--n-spsa 50]
writes DIR/<model>_s<seed>.json and .npz (one attacked image of each class, clean and attacked by PGD at each eps).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from cvaezoo.checkpoints import load_model
from cvaezoo.data.ood import ood_sets
from cvaezoo.inference import batches, predict_proba
from cvaezoo.robustness import (
    auroc,
    classifier_loss,
    detection_scores,
    fgsm,
    loss_gradient,
    pgd,
    rejection_threshold,
    spsa,
    spsa_gradient,
)
from cvaezoo.runs import load_run_data

EPSILONS = [0.0, 0.05, 0.1, 0.2, 0.3]
FALSE_REJECTION = 0.05  # of clean validation images, for every threshold
SPSA_EPS = 0.2


def default_kwargs(model) -> dict:
    """Each model's default classifier mode (as cvaezoo-classify uses it): ELBO with 10 draws, CVAE-3's 100 draws
    of z, M2's q(y|x), the baseline's one network."""
    mode = model.classifier_mode()
    return {"method": mode.method, "samples": mode.samples or None}


def attack_kwargs(model) -> dict:
    """The loss the attacker follows: the same classifier with one draw (fixed by a seed) where it averages draws,
    so that each gradient costs one pass per class."""
    predict = default_kwargs(model)
    return {**predict, "samples": min(predict["samples"], 1) if predict["samples"] else None}


def attacked(attack, loss, x: torch.Tensor, y: torch.Tensor, eps: float, batch: int = 250, **kwargs) -> torch.Tensor:
    return torch.cat([attack(loss, xb, yb, eps, **kwargs) for xb, yb in zip(batches(x, batch), batches(y, batch))])


def detected(scores: dict, thresholds: dict, mask: torch.Tensor) -> dict:
    """Fraction of the masked inputs whose score falls below its threshold, per score."""
    return {name: float((s[mask] < thresholds[name]).float().mean()) if mask.any() else None for name, s in scores.items()}


PARTS = ("attacks", "noise", "spsa", "ood")


def study(run_dir: Path, n_attack: int, n_spsa: int, spsa_steps: int, directions: int,
          parts: tuple[str, ...] = PARTS) -> tuple[dict, dict]:
    config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    seed = int(config["seed"])
    model = load_model(run_dir).eval()
    data = load_run_data(run_dir, [], model.x_shape, model.y_dim)
    x, y = data.split_tensors("test")  # grouped by class: take images spread evenly over the split
    pick = torch.linspace(0, len(x) - 1, min(n_attack, len(x))).long()
    x, y = x[pick], y[pick]
    val_x, _ = data.split_tensors("val")
    predict = default_kwargs(model)
    loss = classifier_loss(model, seed=seed, **attack_kwargs(model))
    generator = torch.Generator().manual_seed(seed)

    def predictions(inputs: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(seed + 1)  # the evaluation draws its own noise, not the attacker's
        return predict_proba(model, inputs, **predict).argmax(1)

    thresholds = {name: rejection_threshold(s, FALSE_REJECTION) for name, s in detection_scores(model, val_x, **predict).items()}
    clean_scores = detection_scores(model, x, **predict)
    clean_right = predictions(x) == y
    result: dict = {"model": model.model_name, "seed": seed, "run": str(run_dir), "n_attack": len(x),
                    "predict": predict, "attack": attack_kwargs(model), "thresholds": thresholds,
                    "clean_accuracy": float(clean_right.float().mean()),
                    "clean_rejected": detected(clean_scores, thresholds, torch.ones(len(x), dtype=torch.bool))}
    every = max(1, len(x) // 10)
    examples = {"clean": x[::every][:10].numpy(), "labels": y[::every][:10].numpy()}  # one image of each class
    started = time.time()
    attacks = (("fgsm", fgsm, {}), ("pgd", pgd, {"steps": 20, "generator": generator})) if "attacks" in parts else ()
    for name, attack, kwargs in attacks:
        rows = []
        for eps in EPSILONS[1:]:
            adv = attacked(attack, loss, x, y, eps, **kwargs)
            right = predictions(adv) == y
            fooled = clean_right & ~right
            rows.append({"eps": eps, "accuracy": float(right.float().mean()), "fooled": int(fooled.sum()),
                         "detected": detected(detection_scores(model, adv, **predict), thresholds, fooled)})
            if name == "pgd":
                examples[f"pgd_{eps}"] = adv[::every][:10].numpy()
        result[name] = [{"eps": 0.0, "accuracy": result["clean_accuracy"]}, *rows]
    result["attack_seconds"] = time.time() - started
    # the control: random +-eps on every pixel (clipped to [0, 1]), no attacker
    result["noise"] = [{"eps": 0.0, "accuracy": result["clean_accuracy"]}]
    for eps in EPSILONS[1:] if "noise" in parts else ():
        signs = torch.randint(0, 2, x.shape, generator=generator).float() * 2 - 1
        noisy = (x + eps * signs).clamp(0, 1)
        result["noise"].append({"eps": eps, "accuracy": float((predictions(noisy) == y).float().mean()),
                                "rejected": detected(detection_scores(model, noisy, **predict), thresholds,
                                                     torch.ones(len(x), dtype=torch.bool))})
    if "spsa" in parts:
        result["spsa"] = spsa_check(loss, x, y, predictions, n_spsa, spsa_steps, directions, generator, seed)
    if "ood" in parts:
        result["ood_auroc"] = {
            name: {score: auroc(clean_scores[score], values)
                   for score, values in detection_scores(model, images, **predict).items()}
            for name, images in ood_sets(x, seed=seed).items()}
    return result, examples


def spsa_check(loss, x: torch.Tensor, y: torch.Tensor, predictions, n_spsa: int, spsa_steps: int, directions: int,
               generator: torch.Generator, seed: int) -> dict:
    """The gradient-free check: SPSA against PGD on the same examples at one eps, and how well one SPSA estimate
    points along the attacker's true gradient at the clean images."""
    spread = torch.linspace(0, len(x) - 1, min(n_spsa, len(x))).long()
    xs, ys = x[spread], y[spread]
    started = time.time()
    spsa_adv = attacked(spsa, loss, xs, ys, SPSA_EPS, steps=spsa_steps, directions=directions, generator=generator)
    pgd_adv = attacked(pgd, loss, xs, ys, SPSA_EPS, steps=20, generator=generator)
    estimate = spsa_gradient(loss, xs, ys, directions, generator=torch.Generator().manual_seed(seed))
    cosine = torch.nn.functional.cosine_similarity(estimate.flatten(1), loss_gradient(loss, xs, ys).flatten(1))
    return {"eps": SPSA_EPS, "n": len(xs), "steps": spsa_steps, "directions": directions,
            "gradient_cosine_median": float(cosine.median()),
            "clean_accuracy": float((predictions(xs) == ys).float().mean()),
            "pgd_accuracy": float((predictions(pgd_adv) == ys).float().mean()),
            "spsa_accuracy": float((predictions(spsa_adv) == ys).float().mean()),
            "seconds": time.time() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--n-attack", type=int, default=200, help="test images attacked (N spread evenly over the split)")
    parser.add_argument("--n-spsa", type=int, default=50, help="of these, images attacked by SPSA (spread evenly)")
    parser.add_argument("--spsa-steps", type=int, default=20)
    parser.add_argument("--directions", type=int, default=32, help="SPSA: random directions per gradient estimate")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to measure (default: all)")
    args = parser.parse_args()
    result, examples = study(args.run, args.n_attack, args.n_spsa, args.spsa_steps, args.directions, tuple(args.parts))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / f"{result['model']}_s{result['seed']}.json"
    out.write_text(json.dumps(result, indent=1))
    np.savez(out.with_suffix(".npz"), **examples)
    pgd = ", ".join(f"{row['eps']}: {row['accuracy']:.3f}" for row in result.get("pgd", []))
    spsa_row = result.get("spsa")
    print(f"{result['model']} seed {result['seed']}: PGD accuracy {pgd or '-'}; " + (
        f"SPSA {spsa_row['spsa_accuracy']:.3f} (PGD {spsa_row['pgd_accuracy']:.3f}) at eps {SPSA_EPS}, gradient "
        f"cosine {spsa_row['gradient_cosine_median']:.3f}" if spsa_row else ""))


if __name__ == "__main__":
    main()
