"""An exported model: a folder in the layout the Hugging Face ecosystem reads, loaded without unpickling.

    model.safetensors   the weights and buffers, nothing else (safetensors holds tensors only)
    config.json         what rebuilds the model without its run directory (:data:`EXPORT_FORMAT`)
    README.md           the model card (written by :mod:`cvaezoo.export`)
    metrics.json        what ``cvaezoo-evaluate`` measured on the exported weights; samples.png, a sample grid

config.json holds ``format``; ``model`` (the registry name) and ``model_class``; ``hyper_parameters``, the
model's constructor arguments as its checkpoints record them (input shape ``x_shape``, condition kind ``y_kind``
and size ``y_dim``, ``class_names`` or ``attribute_groups``, ``net``, ``likelihood`` ...); ``checkpoint_format``,
what the weights mean (:data:`~cvaezoo.checkpoint_files.CHECKPOINT_FORMAT`); ``input``, how the tools preprocess
a new image (``binarize``); ``training``, the run's Hydra overrides (the data is composed from them), seed,
commit and command; and the cvaezoo and torch versions that wrote it. Below the tools in the import layers:
:func:`cvaezoo.checkpoints.load_model` reads an export through :func:`load_export`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

import cvaezoo
from cvaezoo.checkpoint_files import CHECKPOINT_FORMAT, CheckpointError, check_checkpoint_fits
from cvaezoo.commit import source_commit
from cvaezoo.errors import first_line
from cvaezoo.models import MODELS, ConditionalModel
from cvaezoo.models.reference import ReferenceClassifier

#: what an exported folder's config.json means; a reader refuses a newer one
EXPORT_FORMAT = 1
CONFIG_FILE, WEIGHTS_FILE, CARD_FILE, METRICS_FILE, SAMPLES_FILE = (
    "config.json", "model.safetensors", "README.md", "metrics.json", "samples.png")
#: the keys every config.json has
CONFIG_KEYS = ("format", "model", "hyper_parameters", "checkpoint_format", "input", "training")
#: how the tools may binarise a new image (``data.binarize``)
BINARIZE_MODES = ("none", "threshold", "dynamic")
#: what the weights may be stored as (``cvaezoo-export --dtype``); they load into the model's float32 parameters
WEIGHT_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def is_export(path: Path) -> bool:
    """A folder with an exported model's config.json."""
    return path.is_dir() and (path / CONFIG_FILE).is_file()


def read_export_config(folder: Path) -> dict[str, Any]:
    """config.json of an exported folder, checked: JSON, every key, a format this cvaezoo reads (else a
    CheckpointError naming the file)."""
    path = folder / CONFIG_FILE
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not a readable export config: {exc}") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} is not an export config: it holds a {type(config).__name__}")
    missing = [key for key in CONFIG_KEYS if key not in config]
    if missing:
        raise CheckpointError(f"{path} is not a cvaezoo export config: it has no {', '.join(missing)}")
    stated = config["format"]
    if not isinstance(stated, int) or isinstance(stated, bool) or stated < 1:
        raise CheckpointError(f"{path}: format must be a positive integer, got {stated!r}")
    if stated > EXPORT_FORMAT:
        raise CheckpointError(f"{path} has export format {stated}, written by a newer cvaezoo "
                              f"(this one reads up to {EXPORT_FORMAT}): upgrade cvaezoo")
    training, checkpoint_format = config["training"], config["checkpoint_format"]
    problems = [
        (isinstance(config["model"], str), "model must be a model's name"),
        (isinstance(config["hyper_parameters"], dict), "hyper_parameters must be a mapping"),
        (isinstance(checkpoint_format, int) and not isinstance(checkpoint_format, bool) and checkpoint_format >= 1,
         "checkpoint_format must be a positive integer"),
        (isinstance(config["input"], dict) and config["input"].get("binarize") in BINARIZE_MODES,
         f"input.binarize must be one of {list(BINARIZE_MODES)}"),
        (isinstance(training, dict) and isinstance(training.get("overrides", []), list)
         and all(isinstance(item, str) for item in training.get("overrides", [])),
         "training.overrides must be a list of strings"),
        (config.get("weights_dtype", "float32") in WEIGHT_DTYPES, f"weights_dtype must be one of {list(WEIGHT_DTYPES)}"),
    ]
    wrong = [message for fine, message in problems if not fine]
    if wrong:
        raise CheckpointError(f"{path} is not a valid export config: {'; '.join(wrong)}")
    return config


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, on the CPU (a damaged file is a CheckpointError naming it)."""
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist: an export holds its weights in {WEIGHTS_FILE}")
    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        reason = first_line(exc)
        raise CheckpointError(f"{path} is not a readable safetensors file (truncated or corrupt?): {reason}") from None


def exportable_models() -> dict[str, type]:
    """What an export may hold, by the name its config.json gives: every registered model and the reference
    classifier (which scores the generative models' samples)."""
    return {**MODELS, "reference": ReferenceClassifier}


def load_export(folder: Path, map_location: str | torch.device = "cpu") -> ConditionalModel | ReferenceClassifier:
    """The model of an exported folder, rebuilt from config.json and filled from model.safetensors, in eval mode;
    a config that names another model, does not fit the weights or comes from a newer cvaezoo is a CheckpointError
    naming the file."""
    config = read_export_config(folder)
    name = config["model"]
    classes = exportable_models()
    if name not in classes:
        raise CheckpointError(f"{folder / CONFIG_FILE} holds a {name!r} model, which this cvaezoo does not have "
                              f"(models: {', '.join(MODELS)}; a model of your own: register_model it first)")
    stored = {"cvaezoo_model": name, "cvaezoo_format": config["checkpoint_format"]}
    try:
        model = classes[name](**config["hyper_parameters"])
    except (TypeError, ValueError, KeyError, AttributeError, RuntimeError, MemoryError) as exc:  # UserError is a
        # ValueError; RuntimeError: sizes torch cannot allocate
        reason = first_line(exc)
        raise CheckpointError(f"{folder / CONFIG_FILE}: its hyper_parameters do not build a {name}: {reason}") from None
    weights = read_weights(folder / WEIGHTS_FILE)
    checkpoint = {**stored, "state_dict": weights}
    try:
        check_checkpoint_fits(checkpoint, name, model.state_dict())
        model.on_load_checkpoint(checkpoint)  # what the format's weights mean (a model of the zoo checks it)
    except CheckpointError as exc:
        raise CheckpointError(f"{folder / WEIGHTS_FILE} and {CONFIG_FILE}: {exc}") from None
    dtype = config.get("weights_dtype", "float32")
    own = model.state_dict()
    odd = sorted(key for key, value in weights.items()
                 if value.dtype != (WEIGHT_DTYPES[dtype] if own[key].is_floating_point() else own[key].dtype))
    if odd:
        raise CheckpointError(f"{folder / WEIGHTS_FILE}: {', '.join(odd[:3])} are not of the dtype {CONFIG_FILE} "
                              f"states ({dtype} for floating-point weights, the model's own for the others)")
    if not all(torch.isfinite(value).all() for value in weights.values() if value.is_floating_point()):
        raise CheckpointError(f"{folder / WEIGHTS_FILE} holds non-finite weights")
    model.load_state_dict(weights)
    return model.to(map_location).eval()


def write_export(model: ConditionalModel | ReferenceClassifier, folder: Path, binarize: str, training: dict[str, Any], dtype: str = "float32") -> None:
    """Write ``model``'s weights (as ``dtype``) and config.json into ``folder`` (made if needed)."""
    folder.mkdir(parents=True, exist_ok=True)
    weights = {key: (value.to(WEIGHT_DTYPES[dtype]) if value.is_floating_point() else value).contiguous().cpu()
               for key, value in model.state_dict().items()}
    save_file(weights, folder / WEIGHTS_FILE, metadata={"format": "pt", "cvaezoo_model": model.model_name})
    config = {
        "format": EXPORT_FORMAT,
        "library": "cvaezoo",
        "model": model.model_name,
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "display_name": getattr(model, "display_name", model.model_name),
        "hyper_parameters": json.loads(json.dumps(dict(model.hparams))),  # plain values only
        "checkpoint_format": CHECKPOINT_FORMAT,
        "weights_dtype": dtype,
        "input": {"binarize": binarize},
        "training": training,
        "versions": {"cvaezoo": cvaezoo.__version__, "torch": torch.__version__.split("+")[0],
                     "exported_by_commit": source_commit()},
    }
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
