"""Loading trained models by one name: a run directory, a .ckpt file, an exported folder, a pretrained model of
the package (``cvaezoo-models`` lists them) or ``hf://org/name[@revision]`` on the Hugging Face Hub -> a model of
the right class. Nothing is unpickled: an export's weights are safetensors, and a checkpoint is read with
``torch.load(weights_only=True)``, which refuses anything but tensors and plain values."""

from __future__ import annotations

from pathlib import Path

import torch

from cvaezoo.checkpoint_files import CheckpointError, read_checkpoint, resolve_checkpoint
from cvaezoo.exported import is_export, load_export
from cvaezoo.hub import HUB_PREFIX, download_export
from cvaezoo.models import MODELS, ConditionalModel
from cvaezoo.models.reference import ReferenceClassifier, load_reference_checkpoint

#: the pretrained models that ship with the package, one exported folder each: <data>/<model> under this folder
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"


def pretrained_models() -> dict[str, Path]:
    """The name of every pretrained model of the package (e.g. "mnist5k/cvae1") -> its exported folder."""
    if not PRETRAINED_DIR.is_dir():
        return {}
    return {folder.parent.relative_to(PRETRAINED_DIR).as_posix(): folder.parent
            for folder in sorted(PRETRAINED_DIR.glob("*/*/config.json"))}


def resolve_source(name: str | Path) -> Path:
    """What a tool was given -> the checkpoint file or exported folder on disk it names: an existing path (a run
    directory's best checkpoint, else its last; a .ckpt; an exported folder), else a pretrained model's name, else
    ``hf://org/name[@revision]`` (downloaded into the Hub's cache, or found there offline)."""
    text = str(name)
    if text.startswith(HUB_PREFIX):
        return download_export(text)
    path = Path(text)
    if is_export(path):
        return path
    if path.exists():
        return resolve_checkpoint(path)
    pretrained = pretrained_models()
    if text in pretrained:
        return pretrained[text]
    known = ", ".join(pretrained) or "none installed"
    raise CheckpointError(f"{text} is not a run directory, a checkpoint, an exported folder, a pretrained model "
                          f"(pretrained: {known}) or {HUB_PREFIX}org/name[@revision]")


def load_model(path: str | Path, expected: str | None = None, map_location: str | torch.device = "cpu") -> ConditionalModel:
    """Load any cvaezoo model by any of the names :func:`resolve_source` takes, in eval mode; ``expected`` (e.g.
    "cvae1") makes a different model type an error. Loading leaves torch's random stream as it was, so a seed set
    before or after it gives the same Monte-Carlo estimates."""
    source = resolve_source(path)
    with torch.random.fork_rng(devices=[]):  # building the model draws initial weights: not from the caller's stream
        model = _load(source, map_location)
    if expected is not None and expected != model.model_name:
        raise CheckpointError(f"{source} holds a {model.model_name} model, but {expected} was requested")
    return model.eval()


def _load(source: Path, map_location: str | torch.device) -> ConditionalModel:
    if is_export(source):
        model = load_export(source, map_location)
        if not isinstance(model, ConditionalModel):
            raise CheckpointError(f"{source} holds the reference classifier, not a model of the zoo (the tools take "
                                  "it as --reference)")
    else:
        name = read_checkpoint(source).get("cvaezoo_model")
        if not isinstance(name, str) or name not in MODELS:
            raise CheckpointError(f"{source} is not a cvaezoo model checkpoint (model entry: {name!r})")
        try:
            model = MODELS[name].load_from_checkpoint(source, map_location=map_location, weights_only=True)
        except (KeyError, TypeError) as exc:  # a hand-made file without Lightning's entries or hyper-parameters
            raise CheckpointError(f"{source} is not a Lightning checkpoint of a {name}: {type(exc).__name__} "
                                  f"{exc}") from None
    return model


def load_reference(name: str | Path) -> ReferenceClassifier:
    """A trained reference classifier by any name :func:`resolve_source` takes (``cvaezoo-reference``'s run
    directory or .ckpt, an export, ``mnist5k/reference``, ``hf://...``), on the CPU, in eval mode; loading leaves
    torch's random stream as it was."""
    source = resolve_source(name)
    with torch.random.fork_rng(devices=[]):
        if not is_export(source):
            return load_reference_checkpoint(source)
        model = load_export(source)
    if not isinstance(model, ReferenceClassifier):
        raise CheckpointError(f"{source} holds a {model.model_name} model, not a reference classifier")
    return model
