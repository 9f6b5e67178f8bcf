"""What ``cvaezoo-classify``, ``-generate`` and ``-evaluate`` compute, as library functions that return data: the
command-line tools (:mod:`cvaezoo.cli`) only parse arguments, call one of these and save what it returns.

    torch.manual_seed(0)                            # as the tools' --seed 0, before the run is opened
    run = TrainedRun.open("runs/cvae1/<date>")
    evaluation(run, split="test")                   # the dictionary cvaezoo-evaluate writes
    classification(run, split="test", method="iwae", samples=100)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from cvaezoo.checkpoints import load_reference
from cvaezoo.data.base import binarize_fixed
from cvaezoo.errors import UserError
from cvaezoo.figures import figures
from cvaezoo.inference import (
    attribute_generation_accuracy,
    classification_metrics,
    conditional_generation_accuracy,
    distinct_rows,
    evaluate_bound,
    predict_proba,
)
from cvaezoo.models.reference import ReferenceClassifier
from cvaezoo.robustness import PIXEL_NOISES, detection_scores, random_noise, rejection_threshold, score_names
from cvaezoo.sample_quality import attribute_sample_quality, class_sample_quality, completion_diversity
from cvaezoo.trained_run import TrainedRun


def class_columns(run: TrainedRun) -> list[str]:
    """A name per class: the data's class names where it has them (an image folder's), else 0, 1, ..."""
    model = run.model
    return list(model.class_names) if model.class_names else [str(c) for c in range(model.y_dim)]


# ----- classify -------------------------------------------------------------------------------------
@dataclass
class Classification:
    """Classifier mode on a split or on new images: p(y|x) of each input and the decision on it."""

    probs: Tensor  # (N, C)
    decisions: list[str]  # the predicted class's name, or "abstain"
    rejected: Tensor  # (N,) bool
    #: the options and results: model, method, samples, and accuracy, nll, ece, ... for a split
    metrics: dict = field(default_factory=dict)
    labels: Tensor | None = None  # a split's true labels
    names: list[str] | None = None  # the new images' names


def abstentions(run: TrainedRun, x: Tensor, method: str | None, samples: int | None, reject: float | None,
                reject_score: str | None) -> tuple[Tensor, dict]:
    """``reject``: which rows of x the classifier abstains on (their score is below the threshold that rejects
    that share of the run's clean validation images), and how the threshold was set."""
    if reject is None:
        return torch.zeros(len(x), dtype=torch.bool), {}
    score, threshold = rejection_rule(run, method, samples, reject, reject_score)
    rejected = detection_scores(run.model, x, method, samples)[score] < threshold
    return rejected, {"reject_score": score, "false_rejection": reject, "threshold": threshold,
                      "abstained": float(rejected.float().mean())}


def rejection_rule(run: TrainedRun, method: str | None, samples: int | None, reject: float,
                   reject_score: str | None) -> tuple[str, float]:
    """The score an input is rejected by (``reject_score``, default the model's first) and the threshold below which
    it is: the one that rejects the share ``reject`` of the run's clean validation images."""
    available = score_names(run.model)
    score = reject_score or available[0]
    if score not in available:
        raise UserError(f"--reject-score {score}: {run.model.model_name} scores inputs by {' or '.join(available)}")
    val_x, _ = run.data().split_tensors("val")
    return score, rejection_threshold(detection_scores(run.model, val_x, method, samples)[score], reject)


def check_rejection(reject: float | None, reject_score: str | None) -> None:
    """A score to reject by needs a rate to reject at."""
    if reject is None and reject_score is not None:
        raise UserError(f"--reject-score needs --reject RATE (the share of clean images to reject), got only "
                        f"--reject-score {reject_score}")


def decide(probs: Tensor, rejected: Tensor, classes: list[str]) -> list[str]:
    """Each row's most probable class by name, or "abstain" where it was rejected."""
    return ["abstain" if r else classes[i] for r, i in zip(rejected.tolist(), probs.argmax(1).tolist())]


def classification(run: TrainedRun, split: str = "test", images: list[str] | None = None,
                   method: str | None = None, samples: int | None = None, reject: float | None = None,
                   reject_score: str | None = None, seed: int = 0) -> Classification:
    """Classifier mode on a split of the run's data, or on ``images`` (files, folders, .npy batches) preprocessed
    as the training data was; ``method`` and ``samples`` are the model's classifier-mode options
    (:meth:`~cvaezoo.models.ConditionalModel.classifier_mode`); ``reject``: abstain below the threshold that
    rejects that share of clean validation images, by ``reject_score``. ``seed`` seeds the Bernoulli draw that
    binarises new images; the Monte-Carlo estimates draw from torch's global generator (cvaezoo-classify
    ``--seed S`` calls ``torch.manual_seed(S)`` before :meth:`TrainedRun.open`: do the same for its numbers)."""
    check_rejection(reject, reject_score)
    model = run.model
    mode = model.classifier_mode(method, samples)  # a bad option fails before any work
    options = {"method": mode.method, "samples": mode.samples}
    classes = class_columns(run)
    if images:
        names, x = run.new_inputs(images, seed)
        probs = predict_proba(model, x, method, samples)
        rejected, rejection = abstentions(run, x, method, samples, reject, reject_score)
        return Classification(probs, decide(probs, rejected, classes), rejected,
                              {"model": model.model_name, **options, **rejection}, names=names)
    x, labels = run.data().split_tensors(split)
    probs = predict_proba(model, x, method, samples)
    rejected, rejection = abstentions(run, x, method, samples, reject, reject_score)
    metrics = {"model": model.model_name, "split": split, **options, **classification_metrics(probs, labels)}
    if rejection:
        accepted = ~rejected
        metrics.update(rejection, accuracy_accepted=float((probs.argmax(1) == labels)[accepted].float().mean())
                       if accepted.any() else float("nan"))
    return Classification(probs, decide(probs, rejected, classes), rejected, metrics, labels=labels)


# ----- generate -------------------------------------------------------------------------------------
@dataclass
class Generation:
    """Everything ``cvaezoo-generate`` writes: image grids, arrays, and the samples one row per condition."""

    grids: dict[str, Tensor] = field(default_factory=dict)  # file stem -> (rows, cols, C, H, W)
    arrays: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # .npz file stem -> its arrays
    #: the label-conditioned samples (rows, n, C, H, W) and a name per row, for one image file per sample
    each: tuple[Tensor, list[str]] | None = None


def generation(run: TrainedRun, labels: list[int] | None = None, attributes: list[str] | None = None, n: int = 8,
               temperature: float = 1.0, sample: bool = False, n_examples: int = 10,
               split: str = "test") -> Generation:
    """Label-conditioned samples (``n`` per label, default every class; or per attribute vector, default the
    held-out then seen combinations) of a model of x; then the reconstruction, interpolation, analogy,
    attribute-editing or completion grids of ``n_examples`` real examples of ``split``, as the model's declared
    capabilities allow. ``sample``: draw x from p(x|z,y) instead of showing its mean."""
    model = run.model
    if labels and model.y_kind == "multihot":
        raise UserError(f"--labels does not apply: {model.model_name} was trained on attribute vectors (use --attributes)")
    if attributes and model.y_kind != "multihot":
        raise UserError(f"--attributes does not apply: {model.model_name} was trained on {model.y_kind} conditions")
    made = Generation()
    if model.target_name == "x" and model.y_kind == "multihot":
        datamodule = run.data()
        if attributes:
            conditions = torch.stack([datamodule.attribute_vector(text) for text in attributes])
        else:  # held-out combinations first (where the data has them), then seen ones, 10 rows
            splits = [datamodule.splits[name].tensors[1] for name in ("unseen", "train") if name in datamodule.splits]
            conditions = torch.cat([distinct_rows(part) for part in splits])[:10]
        samples = model.sample(conditions, n, temperature=temperature, use_mean=not sample).cpu()
        made.grids["samples"] = samples
        made.arrays["samples"] = {"samples": samples.numpy(), "attributes": conditions.numpy(),
                                  "attribute_names": np.array(datamodule.attribute_names)}
        made.each = samples, [f"condition{i}" for i in range(len(conditions))]
    elif model.target_name == "x":
        chosen = torch.tensor(labels if labels else range(model.y_dim))
        if ((chosen < 0) | (chosen >= model.y_dim)).any():
            raise UserError(f"--labels must lie in [0, {model.y_dim}), got {chosen.tolist()}")
        samples = model.sample(chosen, n, temperature=temperature, use_mean=not sample).cpu()
        made.grids["samples"] = samples
        made.arrays["samples"] = {"samples": samples.numpy(), "labels": chosen.numpy()}
        made.each = samples, [class_columns(run)[i] for i in chosen.tolist()]
    if n_examples > 0:
        datamodule = run.data()
        split_x, split_y = datamodule.split_tensors(split)
        pick = torch.linspace(0, len(split_x) - 1, min(n_examples, len(split_x))).long()  # spread over the split
        x, y = split_x[pick], split_y[pick]
        made.grids.update(figures(model, datamodule, x, y, n, images=split_x))
        if model.target_name == "y" and model.y_kind == "class":  # n draws of y per input, beside the truth
            draws = model.sample(x.to(model.device), n, temperature=temperature, use_mean=False).cpu()
            made.arrays["label_samples"] = {"inputs": x.numpy(), "sampled_labels": draws.numpy(), "labels": y.numpy()}
    return made


# ----- evaluate -------------------------------------------------------------------------------------
def evaluation(run: TrainedRun, split: str = "test", iwae_samples: int = 100, reference: str | Path | None = None,
               n_per_class: int = 100, n_completions: int = 16, log=print) -> dict:
    """The dictionary ``cvaezoo-evaluate`` writes: the ELBO terms and the importance-weighted bound on ``split``;
    classifier-mode accuracy (the model's default mode), and for image data the same on the split's images as new
    inputs, clean and noisy (:func:`noisy_image_accuracy`); for a model of x, with a reference classifier
    (``reference``, default the one :meth:`TrainedRun.reference_dir` finds for the run's data), the
    conditional-generation accuracy and the sample-quality scores beside their real-vs-real floors; for
    structured outputs, the completions' diversity. ``log`` receives a line for each part that is skipped."""
    model = run.model
    given = None if reference is None else load_reference(reference)  # fails early
    datamodule = run.data()
    x, y = datamodule.split_tensors(split)
    result: dict[str, object] = {"model": model.model_name, "split": split, "checkpoint": str(run.source)}
    control_split = "train" if split != "train" else "val"  # other real data for the sample scores' floors
    result.update({f"{split}/{k}": v for k, v in evaluate_bound(model, x, y, iwae_samples).items()})
    if model.y_kind == "class" and model.classifies:
        result[f"{split}/accuracy"] = classification_metrics(predict_proba(model, x), y)["accuracy"]
        if run.data_config().get("binarize") is not None:  # image data the tools preprocess
            result.update(noisy_image_accuracy(run, split))
    reference_path = reference or run.reference_dir()
    scorer = None
    if model.target_name == "x" and reference_path is not None:
        scorer = given or load_reference(reference_path)
        fits = tuple(scorer.hparams.x_shape) == model.x_shape and scorer.hparams.y_dim == model.y_dim
        if not fits and reference is None:  # the default one belongs to other data: skip it
            log(f"{reference_path} was trained on other data (x {tuple(scorer.hparams.x_shape)}); pass --reference")
            scorer = None
    if scorer is not None:
        result["reference"] = str(reference_path)
        result.update(_sample_scores(run, scorer, split, control_split, n_per_class, log))
    elif model.target_name == "x":
        log("conditional-generation accuracy skipped: no reference classifier (train one: cvaezoo-reference)")
    if model.target_name == "y" and hasattr(datamodule, "complete"):  # structured outputs: several per input
        control = datamodule.split_tensors(control_split)
        if len(control[0]) < len(x):
            log(f"no real-vs-real floor: the {control_split} split has fewer examples than the {split} split")
            control = None
        diversity = completion_diversity(model, x, y, n_completions, datamodule.complete, given, control=control)
        result.update({key: value for key, value in diversity.items() if key != "per_input"})
    return result


def noisy_image_accuracy(run: TrainedRun, split: str = "test") -> dict[str, float]:
    """Classifier mode on the split's grey images as new inputs (``cvaezoo-classify --images``: the run's own
    preprocessing, its default classifier mode), clean and under each of PIXEL_NOISES (one draw, seed 1): what a
    user classifying a scan or a drawing can expect. Keys ``images/clean``, ``images/<noise>``."""
    x, y = run.data("data.binarize=none").split_tensors(split)
    binarize = run.binarize()  # composed once (what run.new_inputs does for each batch of files)
    result = {}
    for name, images in {"clean": x, **{n: random_noise(x, *noise) for n, noise in PIXEL_NOISES.items()}}.items():
        probs = predict_proba(run.model, binarize_fixed(images, binarize, seed=0))  # as classification(images=...)
        result[f"images/{name}"] = float((probs.argmax(1) == y).float().mean())
    return result


def _sample_scores(run: TrainedRun, reference: ReferenceClassifier, split: str, control_split: str,
                   n_per_class: int, log) -> dict:
    """Generation accuracy and sample quality of a model of x, scored by ``reference``."""
    model, datamodule, result = run.model, run.data(), {}
    # real images as the reference saw them in training: grey levels, not binarised draws; other real images
    # (of another split) stand in for the samples in the scores' real-vs-real floors
    grey = run.data("data.binarize=none")
    real_x, real_y = grey.split_tensors(split)
    if model.y_kind == "class":
        generation_accuracy = conditional_generation_accuracy(model, reference, n_per_class)
        result["generation_accuracy"] = generation_accuracy["overall"]
        result["generation_accuracy_per_class"] = generation_accuracy["per_class"]
        control_x, control_y = grey.split_tensors(control_split)
        control = (control_x, control_y) if bool(
            (torch.bincount(control_y.long(), minlength=model.y_dim) >= n_per_class).all()) else None
        if control is None:
            log(f"no real-vs-real floor: the {control_split} split has fewer than {n_per_class} images of some class")
        result.update(class_sample_quality(model, reference, real_x, n_per_class, control))
        return result
    # attribute vectors: combinations seen in training, and held-out ones where the data has them
    sets = {"seen": distinct_rows(datamodule.split_dataset("train").tensors[1])}
    if "unseen" in datamodule.splits:
        sets["unseen"] = distinct_rows(datamodule.splits["unseen"].tensors[1])
    for name, combinations in sets.items():
        scores = attribute_generation_accuracy(model, reference, combinations, n_per_class)
        result.update({f"{key}_{name}": value for key, value in scores.items()})
    # samples against the split's real images; there are too few other real images of each combination
    # for a Fréchet floor at these sizes: compare the unbiased kernel distance instead
    real_sets = {"seen": real_x} if split != "unseen" else {}
    if "unseen" in sets:
        real_sets["unseen"] = datamodule.splits["unseen"].tensors[0]
    for name, images in real_sets.items():
        quality = attribute_sample_quality(model, reference, images, sets[name], n_per_class)
        result.update({f"{key}_{name}": value for key, value in quality.items()})
    return result
