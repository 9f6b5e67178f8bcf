"""Attacks a reviewer would accept (#29), on one trained classifier, written as JSON: per eps, the accuracy under
each attack family, the per-example worst case over all of them, and the robust accuracy with detection (right
or rejected) under the detection-aware attack.

Usage: python experiments/robustness/adaptive.py RUN_DIR --out-dir DIR [--transfer-from BASELINE_RUN]
          [--n-attack 100] [--steps 100] [--restarts 2] [--method M --samples K] [--fresh-draws 10] [--spsa-eps 0.1 ...]
          [--families NAME ...] [--tag TAG]
          [--eps 0.05 0.1 ...]

Attack families (cvaezoo/robustness.py), all L-infinity in [0, 1]:
  fgsm; pgd_short (cross-entropy, steps / 5 from one start: the sanity row); pgd (cross-entropy, --steps of 2.5 eps / steps, --restarts random starts, each example's worst);
  pgd_margin (the same on Carlini & Wagner's margin); pgd_eot (stochastic classifiers: the gradient averaged over
  4 draws of the model's noise per step, fixed so the best iterate is not chosen by a lucky draw); aware (the margin minus a hinge on the default detector's margin,
  Carlini & Wagner 2017: it fools the classifier while keeping the score above the threshold); logit matching
  (Tramer et al. 2020: drive the class scores to those of a clean test image of another class); transfer (PGD
  crafted on --transfer-from, the discriminative network, then classified here); latent_descent (models of x:
  steps towards the model's reconstruction as the best wrong class, Schott et al. 2019; no gradient); spsa
  (at --spsa-eps: gradient-free, 20 steps of 32 +-1 directions on the margin); pgd_strokes and aware_strokes (PGD
  on the margin, and the detection-aware loss, perturbing only the digit's pixels, x > 0, the background left
  exactly black: the attack of #29's report, which a density detector does not see); pgd_near_strokes and
  aware_near_strokes (the same on the digit's pixels and the black pixels next to them, 3 x 3); pgd_pixel_budget
  (against a detector that charges per moved pixel: PGD on the margin over that neighbourhood plus the k background
  pixels that buy the most margin, k bisected per image in [0, MAX_PIXELS]: more while not fooled past
  ORTHOGONAL_MIN_MARGIN, fewer while flagged; each image's best, ranked as orthogonal PGD ranks) and
  pgd_strokes_pixel_budget (the same from the stroke pixels alone);
  aware_orthogonal (orthogonal PGD, Bryniarski et al. 2022: steps on the margin orthogonal to the detector's
  gradient until the margin passes ORTHOGONAL_MIN_MARGIN, then on the detector's margin orthogonal to the
  classifier's; from x, from the margin PGD's adversarial images and, for models of x, from latent descent's).
Budgets: pgd --steps from each of --restarts starts; aware --steps from one start; aware_orthogonal --steps from
each of its starts (which cost half the steps each); pgd_margin, logit matching, the region attacks but the
aware ones, latent descent and each of the pixel budgets' PGDs (at most 2 + log2 MAX_PIXELS) half the steps;
pgd_eot a quarter (each step costs 4 draws). At eps 0.5 (the sanity row) only fgsm, pgd_short and pgd run.
The aware attack's margin is capped at KAPPA, so that once the classifier is fooled the steps go to the hinge.
Noise rows (uniform +-0.05, +-0.1, Gaussian 0.05), no attacker: accuracy, the fraction flagged, right and accepted,
and right or flagged.
With --method optimise (analysis by synthesis), the detector is log p(x) of the optimised bound, and the
attacker's gradient is that of the optimised objective at the optimum z* (Danskin), one prior draw per class.
The detector is the model's default rejection score (log p(x) for models of x, max p(y|x) otherwise) at a
threshold rejecting 5 % of clean validation images, as `cvaezoo-classify --reject 0.05` uses it.
Accuracy of a stochastic classifier is its worst case over --fresh-draws fresh draws of its noise: an example
counts as right only if every draw classifies it right.
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from functools import partial
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
    latent_descent,
    log_px_margin,
    logit_matching_loss,
    max_prob_margin,
    orthogonal_pgd,
    pgd,
    pixel_budget_pgd,
    random_noise,
    region_pgd,
    rejection_threshold,
    score_names,
    scores_and_predictions,
    spsa,
    with_detector_hinge,
)
from cvaezoo.runs import load_run_data

EPSILONS = (0.05, 0.1, 0.2, 0.3, 0.5)
SANITY_EPS = 0.5  # the sanity row, where every classifier should be near 0: FGSM and the two PGDs only
SANITY_FAMILIES = ("fgsm", "pgd_short", "pgd")
FALSE_REJECTION = 0.05
HINGE_WEIGHT = 10.0
ORTHOGONAL_MIN_MARGIN = 1.0  # orthogonal PGD turns to the detector past this margin (a draw-to-draw buffer)
MAX_PIXELS = 256  # the pixel budgets: the most background pixels they move beside their region
KAPPA = 5.0  # the aware attack's margin is capped here (Carlini & Wagner's kappa): past it, only the hinge counts
NOISE = (("uniform", 0.05), ("uniform", 0.1), ("gaussian", 0.05))


def mask_string(mask: torch.Tensor) -> str:
    """A boolean per example as a string of 0s and 1s."""
    return "".join("1" if v else "0" for v in mask.tolist())


def study(run_dir: Path, transfer_from: Path | None, n_attack: int, steps: int, restarts: int, method: str | None,
          samples: int | None, fresh_draws: int, spsa_eps: tuple[float, ...] = (), n_val: int | None = None,
          only: tuple[str, ...] = (),
          epsilons: tuple[float, ...] = EPSILONS) -> dict:
    config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    seed = int(config["seed"])
    model = load_model(run_dir).eval()
    data = load_run_data(run_dir, [], model.x_shape, model.y_dim)
    mode = model.classifier_mode(method, samples)
    predict = {"method": mode.method, "samples": mode.samples or None}
    stochastic = bool(mode.samples)
    attacker = {**predict, "samples": 1 if stochastic else None}  # one fixed draw per gradient
    detector = score_names(model)[0]
    # log p(x) from the classifier's own bound: the encoder's ELBO, or the optimised bound for "optimise"
    bound = ({"bound_method": "optimise", "bound_samples": mode.samples} if mode.method == "optimise"
             else {"bound_method": "elbo", "bound_samples": 10})
    started = time.time()

    val_x, _ = data.split_tensors("val")
    val_x = val_x if n_val is None else val_x[spread(n_val, len(val_x))]
    threshold = rejection_threshold(scores_and_predictions(model, val_x, **predict, **bound, seed=seed)[0][detector],
                                    FALSE_REJECTION)
    margin_of = (log_px_margin(model, threshold, samples=1 if stochastic else bound["bound_samples"],
                               method=bound["bound_method"], seed=seed) if detector == "log_px"
                 else max_prob_margin(model, threshold, seed=seed, **attacker))  # the detector, as the attacker sees it
    x, y = data.split_tensors("test")
    pick = spread(n_attack, len(x))
    x, y = x[pick], y[pick]

    def right(inputs: torch.Tensor) -> torch.Tensor:
        """Right under every one of the fresh draws (one for a deterministic classifier); each draw classifies
        only the examples every earlier draw got right."""
        ok = torch.ones(len(inputs), dtype=torch.bool)
        for draw in range(fresh_draws if stochastic else 1):
            if not ok.any():
                break
            with fixed_noise(10_000 + draw, inputs.device):  # the evaluation's own noise, not the attacker's
                ok[ok.clone()] = predict_proba(model, inputs[ok], **predict).argmax(1) == y[ok]
        return ok

    def flagged(inputs: torch.Tensor, among: torch.Tensor | None = None) -> torch.Tensor:
        """Rejected by the detector; with ``among``, scored there only (False elsewhere)."""
        among = torch.ones(len(inputs), dtype=torch.bool) if among is None else among
        caught = torch.zeros(len(inputs), dtype=torch.bool)
        if among.any():
            caught[among] = scores_and_predictions(model, inputs[among], **predict, **bound,
                                                   seed=seed)[0][detector] < threshold
        return caught

    # logit matching targets: the scores of a clean test image of the next class
    with torch.no_grad(), fixed_noise(seed, x.device):
        scores = torch.cat([class_scores(model, b, **attacker) for b in batches(x, 100)])
    target_index = torch.tensor([int(((y == (label + 1) % model.y_dim)).nonzero()[0]) for label in y.tolist()])
    targets = scores[target_index]

    ce = classifier_loss(model, seed=seed, **attacker)
    margin = classifier_loss(model, seed=seed, objective="margin", **attacker)
    aware = with_detector_hinge(classifier_loss(model, seed=seed, objective="margin", confidence=KAPPA, **attacker),
                                margin_of, HINGE_WEIGHT)
    matching = logit_matching_loss(model, seed=seed, **attacker)
    generator = torch.Generator().manual_seed(seed)
    half = max(1, steps // 2)  # the budget of every family but PGD on the cross-entropy (steps x restarts) and aware
    families = {
        "fgsm": lambda eps: attacked(fgsm, ce, x, y, eps),
        # the sanity row: fewer steps and one start must never leave the defender more than the full PGD
        "pgd_short": lambda eps: attacked(pgd, ce, x, y, eps, steps=max(1, steps // 5), generator=generator),
        "pgd": lambda eps: attacked(pgd, ce, x, y, eps, steps=steps, restarts=restarts, generator=generator),
        "pgd_margin": lambda eps: attacked(pgd, margin, x, y, eps, steps=half, generator=generator),
        "aware": lambda eps: attacked(pgd, aware, x, y, eps, steps=steps, generator=generator),
        "logit_matching": lambda eps: attacked(pgd, matching, x, targets, eps, steps=half, generator=generator),
    }
    strokes = x > 0  # the digit's pixels; the stroke attacks leave the rest exactly black (the background)
    # and the black pixels next to them (3 x 3 neighbourhood), where the decoders' blur puts some ink
    near_strokes = torch.nn.functional.max_pool2d(strokes.float(), 3, stride=1, padding=1) > 0

    def region_attack(region: torch.Tensor, loss, budget: int):
        return lambda eps: region_pgd(loss, x, y, eps, region, steps=budget, generator=generator)

    families["pgd_strokes"] = region_attack(strokes, margin, half)
    families["aware_strokes"] = region_attack(strokes, aware, steps)
    families["pgd_near_strokes"] = region_attack(near_strokes, margin, half)
    families["aware_near_strokes"] = region_attack(near_strokes, aware, steps)
    # a region plus the k background pixels that buy the most margin, k bisected per image: log p(x) with
    # the uniform outlier charges about the same for each moved black pixel, so its threshold is a pixel budget
    # (from the neighbourhood, whose grey the decoders forgive, or from the strokes alone, leaving the whole budget)
    def pixel_budget(region: torch.Tensor):
        return lambda eps: pixel_budget_pgd(margin, margin_of, x, y, eps, region, max_pixels=MAX_PIXELS, steps=half,
                                            generator=generator, min_loss=ORTHOGONAL_MIN_MARGIN)

    families["pgd_pixel_budget"] = pixel_budget(near_strokes)
    families["pgd_strokes_pixel_budget"] = pixel_budget(strokes)
    if detector == "log_px":  # a model of x given the class: its own reconstructions show the way
        families["latent_descent"] = lambda eps: attacked(partial(latent_descent, model), margin, x, y, eps,
                                                            steps=half, seed=seed, **attacker)
    # orthogonal PGD (Bryniarski et al. 2022) against the detector: from x, from the margin PGD's adversarial images
    # (fooled, mostly flagged) and, for models of x, from latent descent's (fooled, close to the class's images)
    def orthogonal(eps: float) -> torch.Tensor:
        starts = [pgd(margin, x, y, eps, steps=half, generator=generator)]
        if detector == "log_px":
            starts.append(latent_descent(model, margin, x, y, eps, steps=half, seed=seed, **attacker))
        return orthogonal_pgd(margin, margin_of, x, y, eps, steps=steps, starts=starts, min_loss=ORTHOGONAL_MIN_MARGIN)

    families["aware_orthogonal"] = orthogonal
    if spsa_eps:  # no gradient: 20 steps of 32 +-1 directions, 1 280 loss evaluations per image
        families["spsa"] = lambda eps: attacked(spsa, margin, x, y, eps, steps=20, directions=32, generator=generator)
    if stochastic:
        # four fixed draws (seeds seed+100...): averaged, and deterministic so the best iterate is not a lucky draw
        eot = classifier_loss(model, seed=seed + 100, eot=4, **attacker)
        families["pgd_eot"] = lambda eps: attacked(pgd, eot, x, y, eps, steps=max(1, steps // 4), generator=generator)
    if transfer_from is not None:
        source = load_model(transfer_from).eval()
        source_loss = classifier_loss(source, seed=seed)
        families["transfer"] = lambda eps: attacked(pgd, source_loss, x, y, eps, steps=steps, restarts=restarts,
                                                      generator=generator)
    if only:
        unknown = set(only) - set(families)
        if unknown:
            raise SystemExit(f"adaptive.py: no attack family {sorted(unknown)} for {model.model_name}: "
                             f"choose from {sorted(families)}")
        families = {name: attack for name, attack in families.items() if name in only}

    clean_right, clean_flagged = right(x), flagged(x)
    result: dict = {"model": model.model_name, "seed": seed, "run": str(run_dir), "n_attack": len(x),
                    "predict": predict, "attacker": attacker, "detector": detector, "threshold": threshold,
                    "steps": steps, "restarts": restarts, "n_val": len(val_x), "families": list(families), "spsa_eps": list(spsa_eps), "kappa": KAPPA, "hinge_weight": HINGE_WEIGHT, "orthogonal_min_margin": ORTHOGONAL_MIN_MARGIN, "max_pixels": MAX_PIXELS, **bound, "fresh_draws": fresh_draws if stochastic else 1,
                    "transfer_from": str(transfer_from) if transfer_from else None,
                    "clean": {"accuracy": float(clean_right.float().mean()),
                              "flagged": float(clean_flagged.float().mean()),
                              "right_or_flagged": float((clean_right | clean_flagged).float().mean())},
                    "noise": [], "rows": []}
    timer = time.time()
    with fixed_noise(seed, x.device):
        predict_proba(model, x, **predict)  # one classification of every image, in the classifier's own mode
    result["classify_ms_per_image"] = 1000 * (time.time() - timer) / len(x)
    timer = time.time()
    flagged(x)  # the detector's pass, which rejection adds
    result["detect_ms_per_image"] = 1000 * (time.time() - timer) / len(x)
    for kind, size in NOISE:
        noisy = random_noise(x, kind, size, seed=seed)
        ok, caught = right(noisy), flagged(noisy)
        result["noise"].append({"kind": kind, "size": size, "accuracy": float(ok.float().mean()),
                                "flagged": float(caught.float().mean()),
                                "right_and_accepted": float((ok & ~caught).float().mean()),
                                "right_or_flagged": float((ok | caught).float().mean())})
    for eps in epsilons:
        row: dict = {"eps": eps}
        worst = clean_right.clone()
        worst_with_detection = clean_right | clean_flagged
        for name, attack in families.items():
            if (eps == SANITY_EPS and name not in SANITY_FAMILIES) or (name == "spsa" and eps not in spsa_eps):
                continue
            generator.manual_seed(seed + zlib.crc32(f"{name} {eps}".encode()))  # each attack's own random starts
            adv = attack(eps)
            ok = right(adv)
            caught = flagged(adv, among=~ok)
            row[name] = {"accuracy": float(ok.float().mean()),
                         "fooled_unflagged": int((clean_right & ~ok & ~caught).sum()),
                         "right_or_flagged": float((ok | caught).float().mean())}
            worst &= ok
            worst_with_detection &= ok | caught
        row["worst"] = {"accuracy": float(worst.float().mean()),
                        "right_or_flagged": float(worst_with_detection.float().mean()),
                        # per example, so that a later pass over other families can be combined exactly
                        "right_mask": mask_string(worst), "right_or_flagged_mask": mask_string(worst_with_detection)}
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
    parser.add_argument("--spsa-eps", type=float, nargs="*", default=[],
                        help="eps at which to run the gradient-free SPSA (20 steps, 32 directions)")
    parser.add_argument("--eps", type=float, nargs="+", default=EPSILONS)
    parser.add_argument("--n-val", type=int, default=None, help="validation images the threshold is set on (all)")
    parser.add_argument("--families", nargs="+", default=(), help="only these attack families (default: all)")
    parser.add_argument("--tag", default="", help="suffix of the output file (a second pass over the same run)")
    args = parser.parse_args()
    result = study(args.run, args.transfer_from, args.n_attack, args.steps, args.restarts, args.method, args.samples,
                   args.fresh_draws, tuple(args.spsa_eps), args.n_val,
                   tuple(args.families), tuple(args.eps))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    method = result["predict"]["method"]
    tag = f"_{args.tag}" if args.tag else ""
    (args.out_dir / f"{result['model']}_{method}_s{result['seed']}{tag}.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
