"""The adaptive-attack tables (#29) from adaptive.py's JSON files: per attack family and eps, the accuracy of every
classifier; the worst case over all families; the robust accuracy with detection (right or rejected) under the
detection-aware attack and under the worst case; the noise controls; the cost of classifying.

Usage: python experiments/robustness/adaptive_table.py DIR    (reads DIR/<variant>/*.json, writes DIR.md)

A classifier is a variant (the folder: the training recipe or inference) and a model; its seeds are pooled as
li2019_table.py pools them: mean ± standard error, the seeds' spread and the binomial error of the attacked images
combined (Agresti-Coull, so 0 of 100 is 0.000 ± 0.007, not ± 0).
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from pathlib import Path

from adaptive import MAX_PIXELS, SANITY_EPS  # this folder's scripts
from li2019_table import accuracy_cell, binomial_variance

VARIANTS = {"outlier": "noise-robust recipe (default)", "old": "old recipe (no outlier)",
            "abs": "ABS inference (--method optimise)"}
MODELS = {"cvae1": "CVAE-1", "cvae2": "CVAE-2", "cvae4": "CVAE-4", "cvae3": "CVAE-3", "m2": "M2", "baseline": "NN"}
FAMILIES = {"fgsm": "FGSM", "pgd_short": "PGD, cross-entropy, steps / 5, one start (sanity row)",
            "pgd": "PGD, cross-entropy", "pgd_margin": "PGD, margin (C&W)",
            "pgd_eot": "PGD with EOT (4 draws)", "transfer": "transfer from the NN (PGD on the NN)",
            "latent_descent": "latent descent (Schott et al.)", "spsa": "SPSA (gradient-free)",
            "logit_matching": "logit matching (Tramer et al.)", "aware": "detection-aware PGD (margin + detector hinge)",
            "pgd_strokes": "PGD on the stroke pixels only (margin; background left black)",
            "aware_strokes": "detection-aware PGD on the stroke pixels only",
            "pgd_near_strokes": "PGD on the stroke pixels and their black neighbours (3 × 3)",
            "aware_near_strokes": "detection-aware PGD on the stroke pixels and their black neighbours",
            "pgd_pixel_budget": "PGD on the strokes' neighbourhood plus the k black pixels that buy the most margin "
                                "(a budget of pixels, k bisected per image)",
            "pgd_strokes_pixel_budget": "PGD on the stroke pixels plus the k black pixels that buy the most margin",
            "aware_orthogonal": "orthogonal PGD against classifier and detector (Bryniarski et al.)"}


def combined_worst(a: dict, b: dict) -> dict:
    """The per-example worst case of two passes: each example right (or flagged) under both; where a pass kept no
    per-example masks, the smaller of the two rates, an upper bound on it, marked "bound"."""
    out = {}
    for field in ("accuracy", "right_or_flagged"):
        key = f"{'right' if field == 'accuracy' else field}_mask"
        if key in a and key in b:
            mask = "".join("1" if p == q == "1" else "0" for p, q in zip(a[key], b[key]))
            out[field], out[key] = mask.count("1") / len(mask), mask
        else:
            out[field], out["bound"] = min(a[field], b[field]), True
    return out


def merged(passes: list[dict]) -> dict:
    """One run's result from the files of several passes over it (adaptive.py --families ... --tag): each eps row
    holds every pass's families, and its worst case combines the passes' and the smaller eps rows'
    (:func:`combined_worst`; an image found inside a smaller ball lies inside the larger one)."""
    result = json.loads(json.dumps(passes[0]))
    result["passes"] = len(passes)
    for extra in passes[1:]:
        if extra["n_attack"] != result["n_attack"] or extra["threshold"] != result["threshold"]:
            raise SystemExit(f"adaptive_table.py: the passes over {extra['run']} attack different images or "
                             "detectors (n_attack or threshold differ): rerun them with the same options")
        for row in extra["rows"]:
            mine = next((r for r in result["rows"] if r["eps"] == row["eps"]), None)
            if mine is None:
                continue
            for family, value in row.items():
                if family not in ("eps", "worst"):
                    mine[family] = value
            mine["worst"] = combined_worst(mine["worst"], row["worst"])
        result["seconds"] += extra["seconds"]
    smaller = None
    for row in sorted(result["rows"], key=lambda r: r["eps"]):
        if smaller is not None:
            row["worst"] = combined_worst(row["worst"], smaller)
        smaller = row["worst"]
    return result


def read(folder: Path) -> dict[tuple[str, str], list[dict]]:
    runs: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for variant in VARIANTS:
        passes: dict[tuple[str, str, int], list[dict]] = defaultdict(list)
        for path in sorted((folder / variant).glob("*.json")):  # the main pass sorts before its _<tag> passes
            result = json.loads(path.read_text())
            passes[(result["model"], result["predict"]["method"], result["seed"])].append(result)
        for (model, _, _), results in sorted(passes.items()):
            runs[(variant, model)].append(merged(results))
    return {key: runs[key] for key in sorted(runs, key=lambda k: (list(VARIANTS).index(k[0]), list(MODELS).index(k[1])))}


def name(key: tuple[str, str]) -> str:
    return f"{MODELS.get(key[1], key[1])} · {VARIANTS[key[0]]}"


def cell(results: list[dict], pick) -> str:
    values = [pick(r) for r in results]
    if any(v is None for v in values):
        return "–"
    return accuracy_cell(values, results[0]["n_attack"]) + ("" if len(values) == 3 else f" ({len(values)} s)")


def row_at(result: dict, eps: float) -> dict:
    return next(row for row in result["rows"] if row["eps"] == eps)


def family_value(result: dict, eps: float, family: str, field: str) -> float | None:
    entry = row_at(result, eps).get(family)
    return None if entry is None else entry[field]


def eps_columns(runs: dict) -> list[float]:
    return sorted({row["eps"] for results in runs.values() for r in results for row in r["rows"]})


def family_tables(runs: dict) -> str:
    epsilons = eps_columns(runs)
    header = "| classifier | clean | " + " | ".join(f"ε = {e}" for e in epsilons) + " |\n"
    header += "|---|---|" + "---|" * len(epsilons) + "\n"
    out = []
    for family, title in FAMILIES.items():
        rows = [key for key, results in runs.items() if any(family in row for r in results for row in r["rows"])]
        if not rows:
            continue
        lines = [f"### {title}\n", "Accuracy.\n", header.rstrip("\n")]
        for key in rows:
            results = [r for r in runs[key] if any(family in row for row in r["rows"])]
            lines.append(f"| {name(key)} | {cell(results, lambda r: r['clean']['accuracy'])} | " + " | ".join(
                cell(results, lambda r, e=e: family_value(r, e, family, "accuracy")) if any(
                    row["eps"] == e for row in results[0]["rows"]) else "–" for e in epsilons) + " |")
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def worst_table(runs: dict, field: str) -> str:
    """The per-example worst case over every family, per eps; with detection, without the sanity eps (where only
    FGSM and PGD, which ignore the detector, run)."""
    epsilons = [e for e in eps_columns(runs) if field == "accuracy" or e != SANITY_EPS]
    lines = ["| classifier | clean | " + " | ".join(f"ε = {e}" for e in epsilons) + " |",
             "|---|---|" + "---|" * len(epsilons)]
    for key, results in runs.items():
        clean = cell(results, lambda r: r["clean"][field])
        lines.append(f"| {name(key)} | {clean} | " + " | ".join(
            (cell(results, lambda r, e=e: row_at(r, e)["worst"][field])
             + (" ≤" if any(row_at(r, e)["worst"].get("bound") for r in results) else ""))
            if any(row["eps"] == e for row in results[0]["rows"]) else "–" for e in epsilons) + " |")
    return "\n".join(lines) + "\n"


def aware_table(runs: dict, family: str) -> str:
    """Right or rejected under one detection-aware family, per eps (its seeds only; "–" where it did not run)."""
    epsilons = [e for e in eps_columns(runs) if e != SANITY_EPS]
    lines = ["| classifier | detector | clean: flagged | " + " | ".join(f"ε = {e}" for e in epsilons) + " |",
             "|---|---|---|" + "---|" * len(epsilons)]
    for key, results in runs.items():
        ran = [r for r in results if any(family in row for row in r["rows"])]
        if not ran:
            continue
        lines.append(f"| {name(key)} | {ran[0]['detector']} | {cell(ran, lambda r: r['clean']['flagged'])} | "
                     + " | ".join(cell(ran, lambda r, e=e: family_value(r, e, family, "right_or_flagged"))
                                  if any(row["eps"] == e for row in ran[0]["rows"]) else "–"
                                  for e in epsilons) + " |")
    return "\n".join(lines) + "\n"


def noise_table(runs: dict) -> str:
    kinds = [(n["kind"], n["size"]) for n in next(iter(runs.values()))[0]["noise"]]
    label = {"uniform": "uniform ±", "gaussian": "Gaussian σ = "}
    lines = ["| classifier | clean | " + " | ".join(f"{label[k]}{s}: accuracy | flagged" for k, s in kinds)
             + " |", "|---|---|" + "---|---|" * len(kinds)]
    for key, results in runs.items():
        lines.append(f"| {name(key)} | {cell(results, lambda r: r['clean']['accuracy'])} | " + " | ".join(
            f"{cell(results, lambda r, i=i: r['noise'][i]['accuracy'])} | "
            f"{cell(results, lambda r, i=i: r['noise'][i]['flagged'])}" for i in range(len(kinds))) + " |")
    return "\n".join(lines) + "\n"


def cost_table(runs: dict) -> str:
    lines = ["| classifier | classifier mode | classify, ms per image (1 thread) | detector, ms per image | "
             "study, min per seed |", "|---|---|---|---|---|"]
    for key, results in runs.items():
        mode = results[0]["predict"]
        ms = sum(r["classify_ms_per_image"] for r in results) / len(results)
        timed = [r["detect_ms_per_image"] for r in results if "detect_ms_per_image" in r]
        detect = f"{sum(timed) / len(timed):.1f}" if timed else "–"
        minutes = sum(r["seconds"] for r in results) / len(results) / 60
        lines.append(f"| {name(key)} | {mode['method']}, {mode['samples'] or '–'} draws | {ms:.1f} | {detect} | "
                     f"{minutes:.1f} |")
    return "\n".join(lines) + "\n"


def gap_lines(runs: dict, eps: float = 0.1) -> str:
    """Each classifier's worst-case robust-with-detection accuracy at eps minus the NN's, seed by seed, with its
    error (the seeds' spread of the paired differences and both binomial errors)."""
    nn = {r["seed"]: r for r in runs.get(("outlier", "baseline"), [])}
    lines = ["| classifier | minus the NN, worst case, right or flagged, ε = 0.1 |", "|---|---|"]
    for key, results in runs.items():
        if key[1] == "baseline":
            continue
        pairs = [(r, nn[r["seed"]]) for r in results if r["seed"] in nn and any(row["eps"] == eps for row in r["rows"])]
        if not pairs:
            continue
        n = pairs[0][0]["n_attack"]
        diffs = [row_at(a, eps)["worst"]["right_or_flagged"] - row_at(b, eps)["worst"]["right_or_flagged"] for a, b in pairs]
        mean = sum(diffs) / len(diffs)
        spread = sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1) if len(diffs) > 1 else 0.0
        binomial = sum(binomial_variance(row_at(a, eps)["worst"]["right_or_flagged"], n)
                       + binomial_variance(row_at(b, eps)["worst"]["right_or_flagged"], n) for a, b in pairs) / len(pairs)
        lines.append(f"| {name(key)} | {mean:+.3f} ± {math.sqrt((spread + binomial) / len(pairs)):.3f} "
                     f"({len(pairs)} seeds) |")
    return "\n".join(lines) + "\n"


def sanity_table(runs: dict) -> str:
    """Per classifier, pooled over seeds: the largest eps's PGD accuracy (should be near 0), and the eps at which
    PGD (full) leaves more than FGSM or than the short PGD (should be none: more steps never help the defender)."""
    lines = ["| classifier | PGD at the largest ε | ε where PGD > FGSM | ε where PGD > PGD with steps / 5 |",
             "|---|---|---|---|"]
    for key, results in runs.items():
        epsilons = [row["eps"] for row in results[0]["rows"]]

        def mean(family: str, eps: float) -> float:
            return sum(family_value(r, eps, family, "accuracy") for r in results) / len(results)

        largest = epsilons[-1]
        weaker = [e for e in epsilons if mean("pgd", e) > mean("fgsm", e)]
        shorter = [e for e in epsilons if mean("pgd", e) > mean("pgd_short", e)]
        lines.append(f"| {name(key)} | {mean('pgd', largest):.3f} (ε = {largest}) | "
                     f"{', '.join(map(str, weaker)) or 'none'} | {', '.join(map(str, shorter)) or 'none'} |")
    return "\n".join(lines) + "\n"


def summary_table(runs: dict, epsilons: tuple[float, ...] = (0.05, 0.1, 0.2)) -> str:
    """The README's table: clean accuracy, the worst case without and with detection, and the noise control."""
    head = " | ".join(f"ε = {e}" for e in epsilons)
    lines = [f"| classifier | clean | worst case, accuracy: {head} | right or rejected: {head} | "
             "uniform ±0.1: accuracy, flagged |", "|---|---|" + "---|" * (2 * len(epsilons)) + "---|"]
    for key, results in runs.items():
        def at(e: float, field: str) -> str:
            if not any(row["eps"] == e for row in results[0]["rows"]):
                return "–"
            bound = " ≤" if any(row_at(r, e)["worst"].get("bound") for r in results) else ""
            return cell(results, lambda r: row_at(r, e)["worst"][field]) + bound
        noise = next(i for i, n in enumerate(results[0]["noise"]) if n["kind"] == "uniform" and n["size"] == 0.1)
        lines.append(f"| {name(key)} | {cell(results, lambda r: r['clean']['accuracy'])} | "
                     + " | ".join(at(e, "accuracy") for e in epsilons) + " | "
                     + " | ".join(at(e, "right_or_flagged") for e in epsilons) + " | "
                     + f"{cell(results, lambda r: r['noise'][noise]['accuracy'])}, "
                       f"{cell(results, lambda r: r['noise'][noise]['flagged'])} |")
    return "\n".join(lines) + "\n"


def steps_and_starts(result: dict, family: str) -> str:
    """--steps × --restarts for PGD on the cross-entropy, the only family that restarts; --steps for the others."""
    return f"{result['steps']} × {result['restarts']}" if family == "pgd" else str(result["steps"])


def budget_table(folder: Path, runs: dict) -> str:
    """Larger budgets (DIR/budget/*.json, adaptive.py with more --steps): each family's accuracy and right-or-flagged
    there and in the study's run of the same classifier and seed (more steps must never help the defender)."""
    lines = ["| classifier, seed | family | ε | study: steps | accuracy | right or flagged | "
             "budget: steps | accuracy | right or flagged |", "|---|---|---|---|---|---|---|---|---|"]
    for path in sorted((folder / "budget").glob("*.json")):
        budget = json.loads(path.read_text())
        study = next(r for r in runs[("outlier", budget["model"])] if r["seed"] == budget["seed"])
        for row in budget["rows"]:
            for family, entry in row.items():
                if family in ("eps", "worst"):
                    continue
                mine = row_at(study, row["eps"])[family]
                lines.append(f"| {MODELS[budget['model']]}, {budget['seed']} | {FAMILIES[family]} | {row['eps']} | "
                             f"{steps_and_starts(study, family)} | {mine['accuracy']:.2f} | "
                             f"{mine['right_or_flagged']:.2f} | {steps_and_starts(budget, family)} | "
                             f"{entry['accuracy']:.2f} | {entry['right_or_flagged']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    folder = Path(sys.argv[1])
    runs = read(folder)
    first = next(iter(runs.values()))[0]
    text = (f"# Adaptive attacks (generated by adaptive_table.py from {folder.name}/)\n\n"
            f"{first['n_attack']} test images per run, PGD {first['steps']} steps × {first['restarts']} restarts "
            "(ABS: see its rows' settings in the JSON), "
            f"detector at 5 % clean validation false rejection, a stochastic classifier right only if right under "
            f"each of {first['fresh_draws']} fresh draws. Cells: mean over seeds ± standard error (seeds' spread and "
            "binomial error); \"(n s)\" marks a cell from fewer than 3 seeds; \"≤\" a worst case combined from two "
            "passes over a run, one without per-example records: the smaller of the two, an upper bound. The worst "
            "case at ε includes every image found at a smaller ε (it lies inside the larger ball).\n\n"
            "## Summary\n\n" + summary_table(runs) +
            "\n## Worst case over every attack family: accuracy\n\n" + worst_table(runs, "accuracy") +
            "\n## Worst case over every attack family: robust accuracy with detection (right or rejected)\n\n"
            + worst_table(runs, "right_or_flagged") +
            "\n## Under the detection-aware attacks: right or rejected\n\n"
            "The hinged sum (margin capped at kappa minus 10 × the detector's hinge, signed steps):\n\n"
            + aware_table(runs, "aware") +
            "\nOrthogonal PGD (Bryniarski et al. 2022; from x, the margin PGD's and latent descent's adversarial "
            "images):\n\n" + aware_table(runs, "aware_orthogonal") +
            "\nA budget of pixels (PGD on the strokes' 3 × 3 neighbourhood plus the k black pixels that buy the most "
            f"margin, k bisected per image up to {MAX_PIXELS}, each image's best, unflagged successes first):\n\n"
            + aware_table(runs, "pgd_pixel_budget") +
            "\nThe same from the stroke pixels alone:\n\n" + aware_table(runs, "pgd_strokes_pixel_budget") +
            "\n## The gap to the discriminative network\n\n" + gap_lines(runs) +
            "\n## Sanity\n\n" + sanity_table(runs) +
            ("\n## Larger budgets\n\n" + budget_table(folder, runs) if (folder / "budget").is_dir() else "") +
            "\n## Noise, no attacker\n\n" + noise_table(runs) +
            "\n## Cost\n\n" + cost_table(runs) +
            "\n## Per attack family\n\n" + family_tables(runs))
    (folder.parent / f"{folder.name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
