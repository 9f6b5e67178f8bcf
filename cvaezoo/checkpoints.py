"""Loading trained models: a run directory or a .ckpt file -> a model of the right class."""

from __future__ import annotations

from pathlib import Path

import torch

from cvaezoo.checkpoint_files import CheckpointError, read_checkpoint, resolve_checkpoint
from cvaezoo.models import MODELS, ConditionalModel


def load_model(path: str | Path, expected: str | None = None, map_location: str | torch.device = "cpu") -> ConditionalModel:
    """Load any cvaezoo model; ``expected`` (e.g. "cvae1") makes a different model type an error."""
    checkpoint_path = resolve_checkpoint(path)
    name = read_checkpoint(checkpoint_path).get("cvaezoo_model")
    if name not in MODELS:
        raise CheckpointError(f"{checkpoint_path} is not a cvaezoo model checkpoint (model entry: {name!r})")
    if expected is not None and expected != name:
        raise CheckpointError(f"{checkpoint_path} holds a {name} model, but {expected} was requested")
    model = MODELS[name].load_from_checkpoint(checkpoint_path, map_location=map_location)
    model.eval()
    return model
