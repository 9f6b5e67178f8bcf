"""Assemble the robustness tables and figures from the per-run files of experiments/robustness/run.sh.

    python experiments/robustness/table.py experiments/robustness

Reads <dir>/runs/<variant>/<model>_s<seed>.json (and .npz) and writes <dir>/results.md (mean ± std over seeds),
<dir>/results.csv (one row per run), <dir>/accuracy_vs_eps.png and <dir>/attacked.png.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from cvaezoo.collect import markdown_table, mean_error, mean_std, read_by_model, write_dicts_csv  # noqa: E402
from cvaezoo.models import MODELS  # noqa: E402
from cvaezoo.viz import save_image_grid  # noqa: E402

VARIANTS = {"sweep": "default likelihood (discretised logistic)", "bernoulli": "Bernoulli on grey levels"}
#: the classifiers of the zoo in the order of the tables (and of the curves' colours): those with a likelihood over x
#: (Bayes rule over p(x|y), or M2's q(y|x)) first, then those that model p(y|x) only, which have no variant
CLASSIFIERS = [name for name, cls in sorted(MODELS.items(), key=lambda item: item[1].target_name != "x") if cls.classifies]
#: what a row adds to a model's display_name, by its default classifier mode (the first of classifier_methods)
CLASSIFIER_MODE_CAPTIONS = {"classifier": " (classifier q)"}
OOD_SETS = ["noise", "inverted", "rotated", "digits", "shapes", "fashion_mnist"]


def caption(model: str) -> str:
    """The model's display_name, and which of its classifiers answers where it has more than Bayes rule."""
    cls = MODELS[model]
    return cls.display_name + CLASSIFIER_MODE_CAPTIONS.get(next(iter(cls.classifier_methods), ""), "")


def models_x(model: str) -> bool:
    """Whether the model has a likelihood over x (so that the variants of the likelihood apply to it)."""
    return MODELS[model].target_name == "x"


def read(folder: Path) -> dict[tuple[str, str], list[dict]]:
    """(variant, model) -> its runs, seeds in order."""
    runs: dict[tuple[str, str], list[dict]] = {}
    for variant in VARIANTS:
        found = read_by_model(folder / "runs" / variant)
        runs.update({(variant, model): found[model] for model in CLASSIFIERS if model in found})
    return runs


def cell(values: list[float | None], digits: str = ".3f") -> str:
    values = [v for v in values if v is not None]
    return mean_std(values, digits, ".2f")


def row_name(variant: str, model: str) -> str:
    return caption(model) + (" · Bernoulli" if variant == "bernoulli" else "")


def accuracy_tables(runs: dict) -> str:
    eps = [row["eps"] for row in next(iter(runs.values()))[0]["pgd"]]
    text = ""
    for attack in ("pgd", "fgsm"):
        rows = [[row_name(*key), *[mean_error([r[attack][i]["accuracy"] for r in group], group[0]["n_attack"])
                                   for i in range(len(eps))]] for key, group in runs.items()]
        text += f"\n**Accuracy under {attack.upper()}** (L∞, {next(iter(runs.values()))[0]['n_attack']} " \
                "test images, about 20 of each class; ε = 0 is the clean accuracy)\n\n" + markdown_table(["classifier", *[f"ε={e}" for e in eps]], rows)
    rows = []
    for key, group in runs.items():
        score = "log_px" if "log_px" in group[0]["thresholds"] else "max_prob"  # the default of --reject
        rows.append([row_name(*key), score, *[f"{mean_error([r['noise'][i]['accuracy'] for r in group], group[0]['n_attack'])} / "
                                              f"{cell([r['noise'][i]['rejected'][score] for r in group])}"
                                              for i in range(1, len(eps))]])
    text += "\n**Control: random ±ε on every pixel** (no attacker; accuracy / fraction of the noisy images rejected " \
            "at the 5 % threshold by the default score of `cvaezoo-classify --reject`)\n\n" \
            + markdown_table(["classifier", "score", *[f"ε={e}" for e in eps[1:]]], rows)
    rows = [[row_name(*key), *[mean_error([r["spsa"][name] for r in group], group[0]["spsa"]["n"])
                               for name in ("clean_accuracy", "pgd_accuracy", "spsa_accuracy")],
             cell([r["spsa"].get("gradient_cosine_median") for r in group], ".2f")]
            for key, group in runs.items()]
    first = next(iter(runs.values()))[0]["spsa"]
    text += f"\n**Gradient-free check** (ε = {first['eps']}, {first['n']} of those test images, about 5 of each class; SPSA: {first['steps']} " \
            f"steps of {first['directions']} random ±1 directions; the last column: the median cosine between one SPSA estimate " \
            "and the true gradient of the attacker's loss at the clean images)\n\n" \
            + markdown_table(["classifier", "clean", "PGD", "SPSA", "SPSA gradient cosine"], rows)
    return text


def detection_table(runs: dict) -> str:
    eps = [row["eps"] for row in next(iter(runs.values()))[0]["pgd"]][1:]
    rows = []
    for key, group in runs.items():
        for score in group[0]["thresholds"]:
            rows.append([row_name(*key), score, cell([r["clean_rejected"][score] for r in group]),
                         *[cell([r["pgd"][i + 1]["detected"][score] for r in group]) for i in range(len(eps))]])
    return ("\n**Detection of successful PGD attacks** (the fraction of attacked test images that were right when "
            "clean, wrong after the attack, and score below the threshold that rejects 5 % of clean validation "
            "images; the attacker does not know the detector. \"clean test\": clean test images rejected)\n\n"
            + markdown_table(["classifier", "score", "clean test", *[f"ε={e}" for e in eps]], rows))


def ood_table(runs: dict) -> str:
    sets = [s for s in OOD_SETS if s in next(iter(runs.values()))[0]["ood_auroc"]]
    rows = []
    for key, group in runs.items():
        for score in group[0]["thresholds"]:
            rows.append([row_name(*key), score, *[cell([r["ood_auroc"][s][score] for r in group]) for s in sets]])
    return ("\n**Out-of-distribution AUROC** (clean test images against each set, the set expected to score lower; "
            "1 = perfect, 0.5 = chance, below 0.5 = the set scores *higher* than real digits)\n\n"
            + markdown_table(["classifier", "score", *sets], rows))


def curves(runs: dict, path: Path) -> None:
    """PGD accuracy against eps: one panel per likelihood of the generative models, CVAE-3 and the NN (dashed,
    no likelihood over x) in both; one colour per model."""
    colours = dict(zip(CLASSIFIERS, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, variant in zip(axes, VARIANTS):
        for (v, model), group in runs.items():
            if v != variant and models_x(model):
                continue
            eps = [row["eps"] for row in group[0]["pgd"]]
            acc = [statistics.mean(r["pgd"][i]["accuracy"] for r in group) for i in range(len(eps))]
            ax.plot(eps, acc, marker="o", label=caption(model), color=colours[model],
                    linestyle="-" if models_x(model) else "--")
        ax.set_title(f"PGD; generative models with {VARIANTS[variant]}", fontsize=9)
        ax.set_xlabel("ε (L∞)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("test accuracy (mean of 3 seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def attacked_grid(folder: Path, runs: dict, path: Path) -> None:
    """A row per classifier (seed 0): a 3 and an 8 of the test split, each clean then attacked by PGD at each ε."""
    rows = []
    for variant, model in runs:
        examples = np.load(folder / "runs" / variant / f"{model}_s0.npz")
        keys = ["clean", *sorted(k for k in examples.files if k.startswith("pgd_"))]
        chosen = [int(np.nonzero(examples["labels"] == digit)[0][0]) for digit in (3, 8)]
        rows.append(torch.cat([torch.from_numpy(examples[k][i : i + 1]) for i in chosen for k in keys]))
    save_image_grid(torch.stack(rows), path)


def main() -> None:
    folder = Path(sys.argv[1])
    runs = read(folder)
    write_dicts_csv(folder / "results.csv", [
        {"variant": v, "model": m, "seed": r["seed"], "clean_accuracy": r["clean_accuracy"],
         **{f"pgd_{row['eps']}": row["accuracy"] for row in r["pgd"][1:]},
         **{f"fgsm_{row['eps']}": row["accuracy"] for row in r["fgsm"][1:]},
         "spsa_pgd": r["spsa"]["pgd_accuracy"], "spsa": r["spsa"]["spsa_accuracy"],
         **{f"auroc_{s}_{score}": value for s, scores in r["ood_auroc"].items() for score, value in scores.items()}}
        for (v, m), group in runs.items() for r in group])
    text = "# Robustness study: results\n\nGenerated by `python experiments/robustness/table.py experiments/robustness` " \
           "from the files of `bash experiments/robustness/run.sh`. Accuracies: mean over 3 seeds ± its standard error " \
           "(the seeds' spread and the binomial error of the attacked test images combined, " \
           "`cvaezoo.collect.accuracy_error`; two rows differ beyond noise where the gap exceeds about twice the " \
           "root of the sum of their squared errors); other columns: mean ± std over seeds.\n"
    text += accuracy_tables(runs) + detection_table(runs) + ood_table(runs)
    (folder / "results.md").write_text(text)
    curves(runs, folder / "accuracy_vs_eps.png")
    attacked_grid(folder, runs, folder / "attacked.png")
    print(text)


if __name__ == "__main__":
    main()
