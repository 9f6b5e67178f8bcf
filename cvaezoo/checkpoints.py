"""Loading trained models: a run directory or a .ckpt file -> a ConditionalVAE of the right class."""

from __future__ import annotations

from pathlib import Path

import torch

from cvaezoo.checkpoint_files import CheckpointError, resolve_checkpoint
from cvaezoo.models import MODELS, ConditionalVAE


def load_model(path: str | Path, expected: str | None = None, map_location: str | torch.device = "cpu") -> ConditionalVAE:
    """Load any cvaezoo model; ``expected`` (e.g. "cvae1") makes a different model type an error."""
    checkpoint_path = resolve_checkpoint(path)
    try:
        checkpoint = torch.load(checkpoint_path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises many types for a damaged file
        raise CheckpointError(f"{checkpoint_path} is not a readable checkpoint (truncated or corrupt?): {exc}") from exc
    name = checkpoint.get("cvaezoo_model") if isinstance(checkpoint, dict) else None
    if name not in MODELS:
        raise CheckpointError(f"{checkpoint_path} is not a cvaezoo model checkpoint (model entry: {name!r})")
    if expected is not None and expected != name:
        raise CheckpointError(f"{checkpoint_path} holds a {name} model, but {expected} was requested")
    model = MODELS[name].load_from_checkpoint(checkpoint_path, map_location=map_location)
    model.eval()
    return model
