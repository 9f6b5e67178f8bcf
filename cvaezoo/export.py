"""``cvaezoo-export``'s work: a trained run -> an exported folder (:mod:`cvaezoo.exported`) with its model card.

The metrics and the sample grid are computed on the *exported* weights, reloaded from the folder (so a card
states what its weights do, in the dtype they are stored in), with the seed recorded in metrics.json; the folder
is written under a temporary name and renamed into place at the end, so that a failure leaves nothing behind.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import yaml

from cvaezoo.attributes import group_matches
from cvaezoo.checkpoint_files import read_checkpoint, resolve_checkpoint, run_dir_of
from cvaezoo.checkpoints import load_reference, resolve_source
from cvaezoo.errors import UserError
from cvaezoo.exported import CARD_FILE, METRICS_FILE, SAMPLES_FILE, WEIGHTS_FILE, is_export, write_export
from cvaezoo.figures import summary_grid
from cvaezoo.runs import compose_config, data_overrides, instantiate_checked, merge_overrides, saved_overrides
from cvaezoo.tools import evaluation
from cvaezoo.trained_run import TrainedRun
from cvaezoo.viz import save_image_grid

#: the metrics a card's table shows, where the model has them (every other number is in metrics.json): the
#: bounds (test/iwae_k<K>, test/bpd_<bound> are matched by their prefix), classifier and generation accuracy,
#: and the Fréchet distance beside its real-vs-real floor
HEADLINE_METRICS = ("test/elbo", "test/iwae_k", "test/bpd_", "test/accuracy", "images/", "generation_accuracy",
                    "frechet_distance", "frechet_distance_floor")


def headline_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The numbers of ``metrics`` a card's table and ``cvaezoo-models`` show, in HEADLINE_METRICS' order."""
    return {key: value for prefix in HEADLINE_METRICS for key, value in metrics.items()
            if isinstance(value, float) and (key == prefix or (prefix.endswith(("_k", "_", "/")) and key.startswith(prefix)))}
#: Hugging Face dataset ids of the data configs whose data is a public dataset
DATASET_IDS = {"mnist5k": "mnist", "mnist": "mnist", "idx": "mnist", "fashion_mnist": "fashion_mnist",
               "cifar10": "cifar10", "celeba": "celeba"}


def training_record(run: TrainedRun) -> dict[str, Any]:
    """What a card says about how the run was trained: the Hydra overrides and the command they make, the group
    choices (model, net, data), seed, epochs and the commit of cvaezoo it was trained with (from the run's
    results.json), and the run's final test metrics."""
    overrides = list(run.training_overrides or [])
    record: dict[str, Any] = {"overrides": overrides, "command": " ".join(["cvaezoo-train", *overrides])}
    if run.run_dir is None:
        return record
    hydra_file, config_file = run.run_dir / ".hydra" / "hydra.yaml", run.run_dir / ".hydra" / "config.yaml"
    if hydra_file.is_file():
        choices = yaml.safe_load(hydra_file.read_text())["hydra"]["runtime"]["choices"]
        record["choices"] = {group: choices.get(group) for group in ("model", "net", "data", "experiment")}
    if config_file.is_file():
        config = yaml.safe_load(config_file.read_text())
        record["seed"] = config.get("seed")
        record["max_epochs"] = config.get("trainer", {}).get("max_epochs")
    results_file = run.run_dir / "results.json"
    if results_file.is_file():
        results = json.loads(results_file.read_text())
        record["commit"] = results.get("commit")
        record["results"] = {key: value for key, value in results.items() if key.startswith("test/")}
    return record


def check_new_folder(out: Path) -> None:
    """An export goes into a new folder, or an empty one (else a UserError, before anything is written)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} exists and is not an empty folder: export into a new one")


@contextmanager
def staged(out: Path) -> Iterator[Path]:
    """A staging folder beside ``out`` (checked by :func:`check_new_folder`) to write an export into: renamed to
    ``out`` when the block ends, its weights readable by all (safetensors writes them private; an export is for
    sharing); removed if the block fails, so that a failed export leaves nothing."""
    check_new_folder(out)
    staging = out.parent / f".{out.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        yield staging
        os.chmod(staging / WEIGHTS_FILE, 0o644)
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def export_run(run: TrainedRun, out: Path, dtype: str = "float32", seed: int = 0, iwae_samples: int = 100,
               reference: str | Path | None = None, n_per_class: int = 100, log=print) -> dict[str, Any]:
    """Write the export of ``run`` into ``out`` (which must not exist, or be empty) and return its metrics."""
    reference = reference or run.reference_dir()
    with staged(out) as staging:
        write_export(run.model, staging, run.binarize(), training_record(run), dtype)
        measured = []
        for draw in (seed, seed + 1):  # the card's numbers, and the same with other noise beside them
            torch.manual_seed(draw)  # as cvaezoo-evaluate EXPORT --seed SEED does: it reproduces the card
            exported = TrainedRun.open(staging, run.overrides)
            measured.append(evaluation(exported, "test", iwae_samples, reference, n_per_class, log=log))
        metrics = {key: value for key, value in measured[0].items() if key != "checkpoint"}
        metrics["other_seed"] = {"seed": seed + 1, **headline_metrics(measured[1])}
        metrics["evaluation"] = {"seed": seed, "iwae_samples": iwae_samples, "n_per_class": n_per_class,
                                 "split": "test", "weights_dtype": dtype}
        (staging / METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        torch.manual_seed(seed)
        grid = summary_grid(exported.model, exported.data())
        if grid is not None:
            save_image_grid(grid, staging / SAMPLES_FILE)
        (staging / CARD_FILE).write_text(model_card(exported, metrics, samples=grid is not None))
    return metrics


def export_reference(path: str | Path, out: Path, dtype: str = "float32", overrides: list[str] | tuple = ()) -> dict:
    """Write the export of a reference classifier (``cvaezoo-reference``'s run directory or .ckpt) into ``out``,
    with its test accuracy on the data it was trained on (composed as ``cvaezoo-reference`` composes it)."""
    check_new_folder(out)
    reference = load_reference(path)
    run_dir = run_dir_of(resolve_checkpoint(path))
    saved = saved_overrides(run_dir)
    record = str(run_dir / ".hydra" / "overrides.yaml") if run_dir is not None else "the run's record"
    data_config = compose_config([*merge_overrides(data_overrides(saved, record), list(overrides)), "run_dir=."],
                                 config_name="reference").data
    x, y = instantiate_checked(data_config).split_tensors("test")
    with staged(out) as staging:
        training = {"overrides": saved, "command": " ".join(["cvaezoo-reference", *saved])}
        write_export(reference, staging, str(data_config.get("binarize", "none")), training, dtype)
        reloaded = load_reference(staging)
        accuracy = float((reloaded.classify(x) == y).float().mean()) if reloaded.groups is None else \
            float(group_matches(reloaded.classify(x), y, reloaded.groups).float().mean())
        metrics = {"model": "reference", "split": "test", "test/accuracy": accuracy,
                   "evaluation": {"split": "test", "weights_dtype": dtype, "config": "reference"}}
        (staging / METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        (staging / CARD_FILE).write_text(
            "---\n" + yaml.safe_dump({"library_name": "cvaezoo", "tags": ["cvaezoo", "image-classification"],
                                       "metrics": ["accuracy"]}, sort_keys=False) + "---\n\n"
            "# The reference classifier\n\n"
            "A plain network p(y|x) (cvaezoo/models/reference.py) that labels the generative models' samples for "
            "their conditional-generation accuracy and sample-quality scores (`cvaezoo-evaluate --reference`).\n\n"
            f"Trained by `{training['command']}` on grey levels; test accuracy {accuracy:.4f} "
            f"({len(y)} digits), weights {dtype}.\n")
    return metrics


def export_any(name: str | Path, out: Path, dtype: str = "float32", seed: int = 0, iwae_samples: int = 100,
               reference: str | Path | None = None, n_per_class: int = 100, overrides: list[str] | tuple = (),
               log=print) -> dict[str, Any]:
    """``cvaezoo-export``: a model of the zoo (:func:`export_run`) or a reference classifier
    (:func:`export_reference`), told apart by what its checkpoint records."""
    source = resolve_source(name)
    if not is_export(source) and "cvaezoo_model" not in read_checkpoint(source):  # cvaezoo-reference's checkpoints
        return export_reference(source, out, dtype, overrides)
    return export_run(TrainedRun.open(name, overrides), out, dtype, seed, iwae_samples, reference, n_per_class, log)


def _front_matter(run: TrainedRun, data: str | None) -> str:
    model = run.model
    tags = ["cvaezoo", "conditional-vae" if model.has_latent else "classifier", model.model_name, "pytorch-lightning"]
    if model.target_name == "x":
        tags.append("image-generation")
    if model.y_kind == "class" and model.classifies:
        tags.append("image-classification")
    metrics = ["elbo", "accuracy"] if model.y_kind == "class" and model.classifies else ["elbo"]
    header = {"library_name": "cvaezoo", "tags": tags, "metrics": metrics}
    if data in DATASET_IDS:
        header["datasets"] = [DATASET_IDS[data]]
    return "---\n" + yaml.safe_dump(header, sort_keys=False) + "---\n"


def _limitations(run: TrainedRun) -> str:
    """What the project's studies found about a model of this kind, by what the model declares."""
    model = run.model
    lines = ["- Trained and evaluated on the data named above only; its bound and its classifier are not "
             "calibrated for other data (a bound on log p(x) is not an out-of-distribution detector you can "
             "trust without a check on your data)."]
    if model.y_kind == "class" and model.classifies and model.target_name == "x":
        outlier = run.model.hparams.get("pixel_outlier_weight", 0.0)
        lines.append(
            "- Classifier mode is Bayes rule over the class-conditional bound. "
            + (f"Its pixel likelihood mixes in a uniform outlier (weight {outlier:g}), which keeps it usable on "
               "noisy, scanned or drawn digits (experiments/noise in the cvaezoo repository); "
               if outlier else
               "Its pixel likelihood has no outlier weight: invisible noise on the background can change its "
               "answer (experiments/noise); ")
            + "it is not robust to adversarial perturbations: an attacker with the gradient drives its accuracy "
              "far down at L-inf 0.1-0.2 (experiments/robustness).")
    elif model.y_kind == "class" and model.classifies:
        lines.append("- Its classifier predicts y from x directly; like any network trained on clean digits it "
                     "is not robust to adversarial perturbations (experiments/robustness).")
    if model.target_name == "x":
        lines.append("- Samples are of the training data's kind (here small grey or binary images); the bits per "
                     "dimension of a model with an outlier weight are not comparable with papers' numbers.")
    return "\n".join(lines)


def model_card(run: TrainedRun, metrics: dict[str, Any], samples: bool) -> str:
    """The README.md of an export: YAML front matter the Hub reads, then what the model is (its graph and bound),
    how to use it, its data and training, its metrics, and its limitations."""
    model = run.model
    config = json.loads((run.source / "config.json").read_text())
    training = config["training"]
    data = (training.get("choices") or {}).get("data") or run.data_config().get("_target_", "?").rsplit(".", 1)[-1].lower()
    data_config = run.data_config()
    about = inspect.cleandoc(sys.modules[type(model).__module__].__doc__ or model.display_name)
    settings, other = metrics.get("evaluation", {}), metrics.get("other_seed", {})
    table = "\n".join([f"| metric | seed {settings.get('seed')} | seed {other.get('seed')} (other noise) |",
                       "|---|---|---|",
                       *[f"| {key} | {value:.4g} | {other[key]:.4g} |" if key in other else f"| {key} | {value:.4g} | |"
                         for key, value in headline_metrics(metrics).items()]])
    split = list(data_config.get("split") or [])
    parts = [
        _front_matter(run, data),
        f"# {model.display_name} on {data}\n",
        "A cvaezoo model, exported with `cvaezoo-export`.\n",
        "```text\n" + about + "\n```\n",
        "## Use\n",
        "```bash\npip install cvaezoo\n"
        + ("cvaezoo-generate MODEL --labels 3 7\n" if model.target_name == "x" and model.y_kind == "class" else "")
        + ("cvaezoo-classify MODEL --images my_digit.png\n" if model.classifies and model.y_kind == "class" else "")
        + "cvaezoo-evaluate MODEL\n```\n",
        "where MODEL is this folder, or `hf://org/name` once it is on the Hugging Face Hub. In Python: "
        "`cvaezoo.checkpoints.load_model(MODEL)`. The weights are `model.safetensors` "
        f"({config['weights_dtype']}); `config.json` rebuilds the model.\n",
        "## Data\n",
        f"- data config `{data}`" + (f", split (train, val, test) = {tuple(split)}" if split else "")
        + f", inputs preprocessed with `binarize: {config['input']['binarize']}`",
        f"- x of shape {list(model.x_shape)}; condition: {model.y_kind} of size {model.y_dim}"
        + (f" ({', '.join(model.class_names)})" if model.class_names else "") + "\n",
        "## Training\n",
        f"```bash\n{training['command']}\n```\n",
        f"seed {training.get('seed', 'unknown')}, {training.get('max_epochs', '?')} epochs, trained with cvaezoo commit "
        f"{training.get('commit') or 'unknown'}, exported and evaluated with commit "
        f"{config['versions'].get('exported_by_commit') or 'unknown'}; cvaezoo {config['versions']['cvaezoo']}, torch "
        f"{config['versions']['torch']}.\n",
        "## Metrics\n",
        f"`cvaezoo-evaluate` on the {settings.get('split', 'test')} split, on the exported weights, seed "
        f"{settings.get('seed')}, {settings.get('iwae_samples')} importance samples (every number is in "
        "`metrics.json`; the second column is the same evaluation with other noise, how far a Monte-Carlo "
        "estimate moves with the seed):\n",
        table + "\n",
        "## Intended use and limitations\n",
        _limitations(run) + "\n",
    ]
    if samples:
        parts += ["## Samples\n", f"![samples]({SAMPLES_FILE})\n"]
    return "\n".join(parts)
