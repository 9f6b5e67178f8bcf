"""Command-line tools that use a trained model: ``cvaezoo-classify``, ``-generate``, ``-evaluate``.

Each takes a training run directory (or a .ckpt file) and, optionally, Hydra overrides for the
data, composed on top of the overrides the run was trained with, e.g.
``cvaezoo-classify runs/cvae1/<date> data=idx data.root=/data/mnist``.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import torch
import yaml

from cvaezoo.arguments import (ArgumentParser, count, integer, nonnegative_int, output_directory, positive_float,
                               positive_int, rate, seed)
from cvaezoo.checkpoint_files import resolve_checkpoint, run_dir_of
from cvaezoo.checkpoints import load_model
from cvaezoo.data.base import TensorDataModule, binarize_fixed
from cvaezoo.data.images import load_inputs
from cvaezoo.errors import UserError, one_line_errors
from cvaezoo.figures import figures
from cvaezoo.inference import (
    attribute_generation_accuracy,
    attribute_sample_quality,
    class_sample_quality,
    classification_metrics,
    completion_diversity,
    conditional_generation_accuracy,
    distinct_rows,
    evaluate_bound,
    predict_proba,
)
from cvaezoo.models.base import ConditionalVAE
from cvaezoo.models.reference import load_reference
from cvaezoo.robustness import detection_scores, rejection_threshold, score_names
from cvaezoo.runs import load_run_data, run_data_config, write_json_atomic
from cvaezoo.viz import save_image_grid, save_images


def load_data(checkpoint: Path, overrides: list[str], model: ConditionalVAE) -> TensorDataModule:
    """The data the run behind ``checkpoint`` was trained on, with ``overrides``, checked against the model."""
    return load_run_data(run_dir_of(checkpoint), overrides, model.x_shape, model.y_dim)


def output_dir(args: argparse.Namespace, checkpoint: Path, command: str) -> Path:
    """The folder to write into, made now: called once everything was computed, so that bad input writes nothing."""
    out = args.out or (run_dir_of(checkpoint) or checkpoint.parent) / command
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a directory: pass --out DIR")
    out.mkdir(parents=True, exist_ok=True)
    return out


def base_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The arguments every tool takes; every option's value is checked by its ``type`` (cvaezoo.arguments)."""
    parser = ArgumentParser(prog=prog, description=description)
    parser.add_argument("run", type=Path, help="a training run directory or a .ckpt file")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for the data, e.g. data=idx data.root=DIR")
    parser.add_argument("--out", type=output_directory, default=None,
                        help="output directory (default: <run>/<command>)")
    parser.add_argument("--split", default="test", choices=["train", "val", "test", "unseen"],
                        help="which split to use (unseen: held-out attribute combinations of data=shapes)")
    parser.add_argument("--seed", type=seed, default=0, help="seed for the Monte-Carlo estimates")
    return parser


def _load(args: argparse.Namespace) -> tuple[Path, ConditionalVAE]:
    checkpoint = resolve_checkpoint(args.run)
    torch.manual_seed(args.seed)
    return checkpoint, load_model(checkpoint)


def _predict_kwargs(model: ConditionalVAE, method: str | None, k: int | None) -> dict:
    """Classifier-mode arguments: the model's default method and sample count unless given (--method, -k)."""
    methods = model.classifier_methods
    if not model.classifies or model.y_kind != "class":
        raise UserError(f"{model.model_name} on {model.y_kind} conditions has no classifier mode")
    method = method or next(iter(methods))
    if method not in methods:
        allowed = " or ".join(map(repr, methods))
        raise UserError(f"--method {method}: {model.model_name} classifies with method {allowed}")
    if k is not None and not methods[method]:
        raise UserError(f"-k {k} does not apply: {model.model_name}'s method {method!r} draws no samples")
    return {"method": method, "k": (k or methods[method]) if methods[method] else 0}


def _print_table(title: str, rows: dict[str, object]) -> None:
    print(title)
    width = max(len(k) for k in rows)
    for key, value in rows.items():
        print(f"  {key:<{width}}  {value:.4f}" if isinstance(value, float) else f"  {key:<{width}}  {value}")


def class_columns(model: ConditionalVAE) -> list[str]:
    """A name per class: the data's class names where it has them (an image folder's), else 0, 1, ..."""
    return list(model.class_names) if model.class_names else [str(c) for c in range(model.y_dim)]


def new_inputs(args: argparse.Namespace, checkpoint: Path, model: ConditionalVAE) -> tuple[list[str], torch.Tensor]:
    """``--images``: files, folders or .npy batches, preprocessed as the model's training data was (size and
    channels of x, then the run's binarisation: threshold, or one Bernoulli draw seeded with --seed)."""
    names, x = load_inputs(args.images, model.x_shape)
    run_dir = run_dir_of(checkpoint)
    binarize = run_data_config(run_dir, args.overrides).get("binarize", "none") if run_dir else (
        "threshold" if model.pixel_levels == 2 else "none")  # a bare .ckpt: binary models see thresholded images
    return names, binarize_fixed(x, binarize, args.seed)


def abstentions(args: argparse.Namespace, checkpoint: Path, model: ConditionalVAE, x: torch.Tensor,
                kwargs: dict) -> tuple[torch.Tensor, dict]:
    """``--reject RATE``: which rows of x the classifier abstains on (their score is below the threshold that
    rejects RATE of the run's clean validation images), and how the threshold was set."""
    if args.reject is None:
        return torch.zeros(len(x), dtype=torch.bool), {}
    available = score_names(model)
    score = args.reject_score or available[0]
    if score not in available:
        raise UserError(f"--reject-score {score}: {model.model_name} scores inputs by {' or '.join(available)}")
    val_x, _ = load_data(checkpoint, args.overrides, model).split_tensors("val")
    threshold = rejection_threshold(detection_scores(model, val_x, **kwargs)[score], args.reject)
    rejected = detection_scores(model, x, **kwargs)[score] < threshold
    return rejected, {"reject_score": score, "false_rejection": args.reject, "threshold": threshold,
                      "abstained": float(rejected.float().mean())}


def decide(probs: torch.Tensor, rejected: torch.Tensor, classes: list[str]) -> list[str]:
    """Each row's most probable class by name, or "abstain" where it was rejected."""
    return ["abstain" if r else classes[i] for r, i in zip(rejected.tolist(), probs.argmax(1).tolist())]


def _report_abstentions(rejection: dict, rejected: torch.Tensor) -> None:
    if rejection:
        print(f"abstained on {int(rejected.sum())} of {len(rejected)} inputs: {rejection['reject_score']} below "
              f"{rejection['threshold']:.4g}, the threshold that rejects {rejection['false_rejection']:.1%} of clean "
              "validation images")


def classify(args: argparse.Namespace) -> dict:
    if args.reject_score is not None and args.reject is None:
        raise UserError(f"--reject-score needs --reject RATE (the share of clean images to reject), got only "
                        f"--reject-score {args.reject_score}")
    checkpoint, model = _load(args)
    kwargs = _predict_kwargs(model, args.method, args.k)
    classes = class_columns(model)
    if args.images:
        names, x = new_inputs(args, checkpoint, model)
        probs = predict_proba(model, x, **kwargs)
        rejected, rejection = abstentions(args, checkpoint, model, x, kwargs)
        decisions = decide(probs, rejected, classes)
        out = output_dir(args, checkpoint, "classify")
        with open(out / "predictions.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "predicted", "probability", *[f"p_{c}" for c in classes]])
            for name, decision, row in zip(names, decisions, probs.tolist()):
                writer.writerow([name, decision, f"{max(row):.4f}", *[f"{p:.6g}" for p in row]])
        print(f"{model.model_name} ({kwargs}) on {len(names)} images:")
        for name, decision, row in list(zip(names, decisions, probs.tolist()))[:20]:
            print(f"  {name}  {decision}  {max(row):.3f}")
        _report_abstentions(rejection, rejected)
        print(f"written to {out / 'predictions.csv'}")
        return {"model": model.model_name, "files": names, "predicted": decisions, **rejection}
    x, labels = load_data(checkpoint, args.overrides, model).split_tensors(args.split)
    probs = predict_proba(model, x, **kwargs)
    rejected, rejection = abstentions(args, checkpoint, model, x, kwargs)
    metrics = {"model": model.model_name, "split": args.split, **kwargs, **classification_metrics(probs, labels)}
    if rejection:
        accepted = ~rejected
        metrics.update(rejection, accuracy_accepted=float((probs.argmax(1) == labels)[accepted].float().mean())
                       if accepted.any() else float("nan"))
    out = output_dir(args, checkpoint, "classify")
    np.savez(out / "predictions.npz", probs=probs.numpy(), labels=labels.numpy(), predicted=probs.argmax(1).numpy(),
             abstained=rejected.numpy())
    with open(out / "predictions.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "label", "predicted", *[f"p_{c}" for c in classes]])
        for i, (label, decision, row) in enumerate(zip(labels.tolist(), decide(probs, rejected, classes), probs.tolist())):
            writer.writerow([i, classes[label], decision, *[f"{p:.6g}" for p in row]])
    write_json_atomic(out / "metrics.json", metrics)
    _print_table(f"{model.model_name} on {args.split} ({len(x)} examples, {kwargs}):",
                 {k: metrics[k] for k in ("accuracy", "nll", "ece", "abstained", "accuracy_accepted") if k in metrics})
    _report_abstentions(rejection, rejected)
    print(f"written to {out}")
    return metrics


def generate(args: argparse.Namespace) -> dict:
    checkpoint, model = _load(args)
    if args.labels and model.y_kind == "multihot":
        raise UserError(f"--labels does not apply: {model.model_name} was trained on attribute vectors (use --attributes)")
    if args.attributes and model.y_kind != "multihot":
        raise UserError(f"--attributes does not apply: {model.model_name} was trained on {model.y_kind} conditions")
    # everything is computed first and written last, so that a bad --split or attribute writes nothing
    grids: dict[str, torch.Tensor] = {}  # file stem -> (rows, cols, C, H, W)
    arrays: dict[str, dict] = {}  # .npz file stem -> its arrays
    each: tuple[torch.Tensor, list[str]] | None = None
    datamodule = None
    if model.target_name == "x" and model.y_kind == "multihot":
        datamodule = load_data(checkpoint, args.overrides, model)
        if args.attributes:
            conditions = torch.stack([datamodule.attribute_vector(text) for text in args.attributes])
        else:  # held-out combinations first (where the data has them), then seen ones, 10 rows
            splits = [datamodule.splits[name].tensors[1] for name in ("unseen", "train") if name in datamodule.splits]
            conditions = torch.cat([distinct_rows(part) for part in splits])[:10]
        samples = model.sample(conditions, args.n, temperature=args.temperature, use_mean=not args.sample).cpu()
        grids["samples"] = samples
        arrays["samples"] = {"samples": samples.numpy(), "attributes": conditions.numpy(),
                             "attribute_names": np.array(datamodule.attribute_names)}
        each = samples, [f"condition{i}" for i in range(len(conditions))]
    elif model.target_name == "x":
        labels = torch.tensor(args.labels if args.labels else range(model.y_dim))
        if ((labels < 0) | (labels >= model.y_dim)).any():
            raise UserError(f"--labels must lie in [0, {model.y_dim}), got {labels.tolist()}")
        samples = model.sample(labels, args.n, temperature=args.temperature, use_mean=not args.sample).cpu()
        grids["samples"] = samples
        arrays["samples"] = {"samples": samples.numpy(), "labels": labels.numpy()}
        each = samples, [class_columns(model)[i] for i in labels.tolist()]
    if args.n_examples > 0:
        datamodule = datamodule or load_data(checkpoint, args.overrides, model)
        split_x, split_y = datamodule.split_tensors(args.split)
        pick = torch.linspace(0, len(split_x) - 1, min(args.n_examples, len(split_x))).long()  # spread over the split
        x, y = split_x[pick], split_y[pick]
        grids.update(figures(model, datamodule, x, y, args.n, images=split_x))
        if model.target_name == "y" and model.y_kind == "class":  # n draws of y per input, beside the truth
            draws = model.sample(x.to(model.device), args.n, temperature=args.temperature, use_mean=False).cpu()
            arrays["label_samples"] = {"inputs": x.numpy(), "sampled_labels": draws.numpy(), "labels": y.numpy()}
    out = output_dir(args, checkpoint, "generate")
    files: dict[str, str] = {}
    for name, grid in grids.items():
        files[f"{name}.png"] = str(save_image_grid(grid, out / f"{name}.png"))
    for name, contents in arrays.items():
        np.savez(out / f"{name}.npz", **contents)
        if name != "samples":
            files[f"{name}.npz"] = str(out / f"{name}.npz")
    if args.each and each is not None:
        files["samples/"] = str(_save_each(*each, out))
    for name, path in files.items():
        print(f"{name}: {path}")
    return files


def _save_each(samples: torch.Tensor, row_names: list[str], out: Path) -> Path:
    """``--each``: samples (rows, n, C, H, W) as out/samples/<row name>_<j>.png (a row per label or condition)."""
    names = [f"{row}_{j}".replace("/", "_") for row in row_names for j in range(samples.shape[1])]
    save_images(samples.flatten(0, 1), out / "samples", names)
    return out / "samples"


def default_reference(checkpoint: Path, overrides: list[str]) -> Path | None:
    """The run directory runs/reference/<data> (``cvaezoo-reference data=<data>``) for the data the model is
    evaluated on, if it holds a checkpoint."""
    data = "mnist5k"
    run_dir = run_dir_of(checkpoint)
    if run_dir is not None:
        hydra_cfg = yaml.safe_load((run_dir / ".hydra" / "hydra.yaml").read_text())
        data = hydra_cfg["hydra"]["runtime"]["choices"].get("data", data)
    data = next((item.split("=", 1)[1] for item in overrides if item.split("=", 1)[0] == "data"), data)
    path = Path("runs/reference") / data
    return path if (path / "checkpoints").is_dir() else None


def evaluate(args: argparse.Namespace) -> dict:
    checkpoint, model = _load(args)
    given_reference = None if args.reference is None else load_reference(args.reference)  # a bad one: before the work
    datamodule = load_data(checkpoint, args.overrides, model)
    x, y = datamodule.split_tensors(args.split)
    result: dict[str, object] = {"model": model.model_name, "split": args.split, "checkpoint": str(checkpoint)}
    control_split = "train" if args.split != "train" else "val"  # other real data for the sample scores' floors
    result.update({f"{args.split}/{k}": v for k, v in evaluate_bound(model, x, y, k=args.k).items()})
    if model.y_kind == "class" and model.classifies:
        probs = predict_proba(model, x, **_predict_kwargs(model, None, None))
        result[f"{args.split}/accuracy"] = classification_metrics(probs, y)["accuracy"]
    reference_path = args.reference or default_reference(checkpoint, args.overrides)
    reference = None
    if model.target_name == "x" and reference_path is not None:
        reference = given_reference or load_reference(reference_path)
        fits = tuple(reference.hparams.x_shape) == model.x_shape and reference.hparams.y_dim == model.y_dim
        if not fits and args.reference is None:  # the default one belongs to other data: skip it
            print(f"{reference_path} was trained on other data (x {tuple(reference.hparams.x_shape)}); pass --reference")
            reference = None
    if reference is not None:
        result["reference"] = str(reference_path)
        # real images as the reference saw them in training: grey levels, not binarised draws; other real images
        # (of another split) stand in for the samples in the scores' real-vs-real floors
        grey = load_data(checkpoint, [*args.overrides, "data.binarize=none"], model)
        real_x, real_y = grey.split_tensors(args.split)
        if model.y_kind == "class":
            generation = conditional_generation_accuracy(model, reference, args.n_per_class)
            result["generation_accuracy"] = generation["overall"]
            result["generation_accuracy_per_class"] = generation["per_class"]
            control_x, control_y = grey.split_tensors(control_split)
            control = (control_x, control_y) if bool(
                (torch.bincount(control_y.long(), minlength=model.y_dim) >= args.n_per_class).all()) else None
            if control is None:
                print(f"no real-vs-real floor: the {control_split} split has fewer than {args.n_per_class} images of "
                      "some class")
            result.update(class_sample_quality(model, reference, real_x, args.n_per_class, control))
        else:  # attribute vectors: combinations seen in training, and held-out ones where the data has them
            sets = {"seen": distinct_rows(datamodule.split_dataset("train").tensors[1])}
            if "unseen" in datamodule.splits:
                sets["unseen"] = distinct_rows(datamodule.splits["unseen"].tensors[1])
            for name, combinations in sets.items():
                scores = attribute_generation_accuracy(model, reference, combinations, args.n_per_class)
                result.update({f"{key}_{name}": value for key, value in scores.items()})
            # samples against the split's real images; there are too few other real images of each combination
            # for a Fréchet floor at these sizes: compare the unbiased kernel distance instead
            real_sets = {"seen": real_x} if args.split != "unseen" else {}
            if "unseen" in sets:
                real_sets["unseen"] = datamodule.splits["unseen"].tensors[0]
            for name, images in real_sets.items():
                quality = attribute_sample_quality(model, reference, images, sets[name], args.n_per_class)
                result.update({f"{key}_{name}": value for key, value in quality.items()})
    elif model.target_name == "x":
        print("conditional-generation accuracy skipped: no reference classifier (train one: cvaezoo-reference)")
    if model.target_name == "y" and hasattr(datamodule, "complete"):  # structured outputs: several per input
        completer = given_reference  # sees completed images
        control = datamodule.split_tensors(control_split)
        if len(control[0]) < len(x):
            print(f"no real-vs-real floor: the {control_split} split has fewer examples than the {args.split} split")
            control = None
        diversity = completion_diversity(model, x, y, args.n_completions, datamodule.complete, completer,
                                         control=control)
        result.update({key: value for key, value in diversity.items() if key != "per_input"})
    out = output_dir(args, checkpoint, "evaluate")
    write_json_atomic(out / "evaluation.json", result)
    _print_table(f"{model.model_name} on {args.split} ({len(x)} examples):",
                 {k: v for k, v in result.items() if isinstance(v, float)})
    print(f"written to {out / 'evaluation.json'}")
    return result


def _run(function, parser: argparse.ArgumentParser, argv: list[str] | None) -> None:
    args = parser.parse_args(argv)
    with one_line_errors(parser.prog):
        function(args)


def classify_main(argv: list[str] | None = None) -> None:
    parser = base_parser("cvaezoo-classify", "Predict y for new x: Bayes rule for CVAE-1/2/4, p(y|x,z) for CVAE-3.")
    parser.add_argument("--method", default=None, help="elbo | iwae (CVAE-1/2/4; default elbo); mc | mean (CVAE-3; default mc)")
    parser.add_argument("-k", type=positive_int, default=None,
                        help="samples per class bound (default 10 for elbo, 100 for iwae/mc)")
    parser.add_argument("--images", nargs="+", default=None, metavar="PATH",
                        help="classify these instead of a split: image files, folders of them, or .npy batches; "
                             "writes predictions.csv (file, predicted class, probability of each class)")
    parser.add_argument("--reject", type=rate, default=None, metavar="RATE",
                        help="abstain (predicted: abstain) on inputs that score below the threshold rejecting RATE "
                             "(e.g. 0.05) of the run's clean validation images")
    parser.add_argument("--reject-score", default=None, choices=["log_px", "log_px_given_y", "max_prob"],
                        help="the score --reject thresholds: log_px, the bound on log p(x) (default for models of x), "
                             "log_px_given_y (of the predicted class) or max_prob, the top p(y|x) (the others' default)")
    _run(classify, parser, argv)


def generate_main(argv: list[str] | None = None) -> None:
    parser = base_parser("cvaezoo-generate", "Sample x for chosen labels or attributes; reconstruction, interpolation, "
                                             "analogy and attribute-editing grids.")
    parser.add_argument("--labels", type=integer, nargs="+", default=None,
                        help="labels to sample (default: every class)")
    parser.add_argument("--attributes", nargs="+", default=None,
                        help="attribute data: one row per argument, the attributes that are on, e.g. "
                             "shape=circle,size=large,column=left,row=top,fill=filled (default: held-out then seen combinations)")
    parser.add_argument("-n", type=positive_int, default=8, help="samples per label")
    parser.add_argument("--temperature", type=positive_float, default=1.0,
                        help="scale of the prior's standard deviation (> 0)")
    parser.add_argument("--sample", action="store_true", help="draw x from p(x|z,y) instead of showing its mean")
    parser.add_argument("--n-examples", type=nonnegative_int, default=10,
                        help="real examples for the reconstruction/analogy grids")
    parser.add_argument("--each", action="store_true", help="also write every sample as its own PNG: samples/<label>_<j>.png")
    _run(generate, parser, argv)


def evaluate_main(argv: list[str] | None = None) -> None:
    parser = base_parser("cvaezoo-evaluate",
                         "ELBO terms, importance-weighted bound, classifier and generation accuracy.")
    parser.add_argument("-k", type=positive_int, default=100, help="importance samples for the IWAE bound")
    parser.add_argument("--reference", type=Path, default=None,
                        help="reference classifier: its run directory or .ckpt (default: runs/reference/<data>, cvaezoo-reference)")
    parser.add_argument("--n-per-class", type=positive_int, default=100,
                        help="generated samples per class (or per attribute combination) to score")
    parser.add_argument("--n-completions", type=count(2), default=16,
                        help="structured outputs (quadrants): draws per input for best-of-S error and diversity")
    _run(evaluate, parser, argv)
