"""Command-line tools that use a trained model: ``cvaezoo-classify``, ``-generate``, ``-evaluate``, ``-export``,
``-push`` and ``-models``.

Each takes a model by any name :func:`~cvaezoo.checkpoints.load_model` takes (a training run directory, a .ckpt
file, an exported folder, a pretrained model's name such as ``mnist5k/cvae1``, ``hf://org/name[@revision]``)
and, optionally, Hydra overrides for the data, composed on top of the overrides the run was trained with, e.g.
``cvaezoo-classify runs/cvae1/<date> data=idx data.root=/data/mnist``. They parse the arguments,
call one function of :mod:`cvaezoo.tools` on the :class:`~cvaezoo.trained_run.TrainedRun` and save what it returns.
"""

from __future__ import annotations

import argparse
import csv
import inspect
import json
from pathlib import Path

import numpy as np
import torch

from cvaezoo.arguments import (
    ArgumentParser,
    count,
    integer,
    nonnegative_int,
    output_directory,
    positive_float,
    positive_int,
    rate,
    seed,
)
from cvaezoo.checkpoints import pretrained_models
from cvaezoo.errors import one_line_errors
from cvaezoo.export import export_any, headline_metrics
from cvaezoo.exported import METRICS_FILE, WEIGHT_DTYPES, exportable_models, read_export_config
from cvaezoo.hub import push_export
from cvaezoo.runs import write_json_atomic
from cvaezoo.tools import check_rejection, class_columns, classification, evaluation, generation
from cvaezoo.trained_run import TrainedRun
from cvaezoo.viz import save_image_grid, save_images

MODEL_HELP = ("the model: a training run directory, a .ckpt file, an exported folder, a pretrained model's name "
              "(cvaezoo-models lists them) or hf://org/name[@revision]")


def base_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The arguments every tool takes; every option's value is checked by its ``type`` (cvaezoo.arguments)."""
    parser = ArgumentParser(prog=prog, description=description)
    parser.add_argument("run", help=MODEL_HELP)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for the data, e.g. data=idx data.root=DIR")
    parser.add_argument("--out", type=output_directory, default=None,
                        help="output directory (default: <run>/<command>)")
    parser.add_argument("--split", default="test", choices=["train", "val", "test", "unseen"],
                        help="which split to use (unseen: held-out attribute combinations of data=shapes)")
    parser.add_argument("--seed", type=seed, default=0, help="seed for the Monte-Carlo estimates")
    return parser


def open_run(args: argparse.Namespace) -> TrainedRun:
    torch.manual_seed(args.seed)
    return TrainedRun.open(args.run, args.overrides)


def _print_table(title: str, rows: dict[str, object]) -> None:
    print(title)
    width = max(len(k) for k in rows)
    for key, value in rows.items():
        print(f"  {key:<{width}}  {value:.4f}" if isinstance(value, float) else f"  {key:<{width}}  {value}")


def _report_abstentions(rejection: dict, rejected: torch.Tensor) -> None:
    if rejection.get("reject_score"):
        print(f"abstained on {int(rejected.sum())} of {len(rejected)} inputs: {rejection['reject_score']} below "
              f"{rejection['threshold']:.4g}, the threshold that rejects {rejection['false_rejection']:.1%} of clean "
              "validation images")


def classify(args: argparse.Namespace) -> dict:
    check_rejection(args.reject, args.reject_score)
    run = open_run(args)
    result = classification(run, args.split, args.images, args.method, args.samples, args.reject, args.reject_score,
                            args.seed)
    classes, metrics, probs = class_columns(run), result.metrics, result.probs
    options = {"method": metrics["method"], "samples": metrics["samples"]}
    out = run.output_dir("classify", args.out)
    if args.images:
        with open(out / "predictions.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "predicted", "probability", *[f"p_{c}" for c in classes]])
            for name, decision, row in zip(result.names, result.decisions, probs.tolist()):
                writer.writerow([name, decision, f"{max(row):.4f}", *[f"{p:.6g}" for p in row]])
        print(f"{metrics['model']} ({options}) on {len(result.names)} images:")
        for name, decision, row in list(zip(result.names, result.decisions, probs.tolist()))[:20]:
            print(f"  {name}  {decision}  {max(row):.3f}")
        _report_abstentions(metrics, result.rejected)
        print(f"written to {out / 'predictions.csv'}")
        return {"model": metrics["model"], "files": result.names, "predicted": result.decisions,
                **{k: v for k, v in metrics.items() if k not in ("model", *options)}}
    labels = result.labels
    np.savez(out / "predictions.npz", probs=probs.numpy(), labels=labels.numpy(), predicted=probs.argmax(1).numpy(),
             abstained=result.rejected.numpy())
    with open(out / "predictions.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "label", "predicted", *[f"p_{c}" for c in classes]])
        for i, (label, decision, row) in enumerate(zip(labels.tolist(), result.decisions, probs.tolist())):
            writer.writerow([i, classes[label], decision, *[f"{p:.6g}" for p in row]])
    write_json_atomic(out / "metrics.json", metrics)
    _print_table(f"{metrics['model']} on {args.split} ({len(labels)} examples, {options}):",
                 {k: metrics[k] for k in ("accuracy", "nll", "ece", "abstained", "accuracy_accepted") if k in metrics})
    _report_abstentions(metrics, result.rejected)
    print(f"written to {out}")
    return metrics


def generate(args: argparse.Namespace) -> dict:
    run = open_run(args)
    # everything is computed first and written last, so that a bad --split or attribute writes nothing
    made = generation(run, args.labels, args.attributes, args.n, args.temperature, args.sample, args.n_examples,
                      args.split)
    out = run.output_dir("generate", args.out)
    files: dict[str, str] = {}
    for name, grid in made.grids.items():
        files[f"{name}.png"] = str(save_image_grid(grid, out / f"{name}.png"))
    for name, contents in made.arrays.items():
        np.savez(out / f"{name}.npz", **contents)
        if name != "samples":
            files[f"{name}.npz"] = str(out / f"{name}.npz")
    if args.each and made.each is not None:
        files["samples/"] = str(_save_each(*made.each, out))
    for name, path in files.items():
        print(f"{name}: {path}")
    return files


def _save_each(samples: torch.Tensor, row_names: list[str], out: Path) -> Path:
    """``--each``: samples (rows, n, C, H, W) as out/samples/<row name>_<j>.png (a row per label or condition)."""
    names = [f"{row}_{j}".replace("/", "_") for row in row_names for j in range(samples.shape[1])]
    save_images(samples.flatten(0, 1), out / "samples", names)
    return out / "samples"


def evaluate(args: argparse.Namespace) -> dict:
    run = open_run(args)
    result = evaluation(run, args.split, args.iwae_samples, args.reference, args.n_per_class, args.n_completions)
    out = run.output_dir("evaluate", args.out)
    write_json_atomic(out / "evaluation.json", result)
    _print_table(f"{result['model']} on {args.split} ({len(run.data().split_tensors(args.split)[0])} examples):",
                 {k: v for k, v in result.items() if isinstance(v, float)})
    print(f"written to {out / 'evaluation.json'}")
    return result


def _run(function, parser: argparse.ArgumentParser, argv: list[str] | None) -> None:
    args = parser.parse_args(argv)
    with one_line_errors(parser.prog):
        function(args)


def classify_main(argv: list[str] | None = None) -> None:
    parser = base_parser("cvaezoo-classify", "Predict y for new x: Bayes rule for CVAE-1/2/4, p(y|x,z) for CVAE-3.")
    parser.add_argument("--method", default=None,
                        help="classifier mode: elbo | iwae | optimise (Bayes rule, CVAE-1/2/4; default elbo; optimise: "
                             "analysis by synthesis, z optimised per class without the encoder); mc | mean | iwae "
                             "(CVAE-3; default mc)")
    parser.add_argument("--samples", type=positive_int, default=None,
                        help="draws the method takes: per class bound (default 10 for elbo, 100 for iwae), prior "
                             "draws (optimise, default 100) or of z (CVAE-3's mc, default 100); an error for a method "
                             "that draws none")
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
    parser.add_argument("--iwae-samples", type=positive_int, default=100,
                        help="importance samples K of the IWAE bound (and of CVAE-3's estimate of log p(y|x))")
    parser.add_argument("--reference", default=None,
                        help="reference classifier: its run directory, .ckpt, export or name (mnist5k/reference; default: "
                             "the one cvaezoo-reference trained for the run's data, runs/reference/<data> in the folder "
                             "the run was trained from, or an export's beside it)")
    parser.add_argument("--n-per-class", type=positive_int, default=100,
                        help="generated samples per class (or per attribute combination) to score")
    parser.add_argument("--n-completions", type=count(2), default=16,
                        help="structured outputs (quadrants): draws per input for best-of-S error and diversity")
    _run(evaluate, parser, argv)


def export(args: argparse.Namespace) -> dict:
    metrics = export_any(args.run, args.out_dir, args.dtype, args.seed, args.iwae_samples, args.reference,
                         args.n_per_class, args.overrides)
    _print_table(f"exported {metrics['model']} to {args.out_dir} (metrics of the exported weights):",
                 headline_metrics(metrics))
    return metrics


def export_main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="cvaezoo-export", description="Export a trained model as a folder the Hugging Face "
                            "ecosystem reads: model.safetensors, config.json, a model card (README.md), "
                            "metrics.json and samples.png.")
    parser.add_argument("run", help=MODEL_HELP)
    parser.add_argument("out_dir", type=Path, metavar="OUT", help="the folder to write (new, or empty)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for the data the metrics are measured on")
    parser.add_argument("--dtype", default="float32", choices=list(WEIGHT_DTYPES),
                        help="what the weights are stored as (float16 halves the file; the card's metrics are "
                             "those of the stored weights)")
    parser.add_argument("--seed", type=seed, default=0, help="seed for the card's Monte-Carlo estimates")
    parser.add_argument("--iwae-samples", type=positive_int, default=100, help="importance samples of the IWAE bound")
    parser.add_argument("--reference", default=None,
                        help="reference classifier for the generation scores, by any name (default: the run's, if it "
                             "has one)")
    parser.add_argument("--n-per-class", type=positive_int, default=100, help="generated samples per class to score")
    _run(export, parser, argv)


def push_main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="cvaezoo-push", description="Upload an exported folder to a Hugging Face Hub model "
                            "repository (made if needed; needs the hub extra and a token: huggingface-cli login).")
    parser.add_argument("export", type=Path, help="a folder cvaezoo-export wrote")
    parser.add_argument("repo_id", metavar="ORG/NAME", help="the model repository")
    parser.add_argument("--private", action="store_true", help="make a new repository private")
    parser.add_argument("--revision", default=None, help="the branch to commit to (default: main)")
    _run(lambda args: print(push_export(args.export, args.repo_id, args.private, args.revision)), parser, argv)


#: what cvaezoo-models shows of each card: the bound, classifier accuracy clean and under the strongest noise, and
#: generation accuracy (the card and metrics.json hold the rest)
LISTED_METRICS = ("test/elbo", "test/accuracy", "images/uniform_0.1", "generation_accuracy")


def models_main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="cvaezoo-models", description="The pretrained models that ship with cvaezoo: name, "
                            "what it is, and its card's headline metrics. Use a name wherever a tool takes a model.")
    parser.parse_args(argv)
    for name, folder in pretrained_models().items():
        config = read_export_config(folder)
        metrics = json.loads((folder / METRICS_FILE).read_text())
        kind = exportable_models()[config["model"]]
        about = (inspect.getdoc(kind) or "").splitlines()[0]
        shown = ", ".join(f"{key} {metrics[key]:.4g}" for key in LISTED_METRICS if isinstance(metrics.get(key), float))
        print(f"{name:<18} {config['display_name']:<9} {about:<52} {shown}")
