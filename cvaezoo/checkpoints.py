"""Finding and loading trained models: a run directory or a .ckpt file -> a ConditionalVAE."""

from __future__ import annotations

from pathlib import Path

import torch

from cvaezoo.errors import UserError
from cvaezoo.models import MODELS, ConditionalVAE


class CheckpointError(UserError):
    """A checkpoint that is missing, unreadable, or of the wrong kind."""


def resolve_checkpoint(path: str | Path) -> Path:
    """A .ckpt file as given, or a run directory's checkpoints/best.ckpt (else last.ckpt)."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.ckpt", "last.ckpt"):
            candidate = path / "checkpoints" / name
            if candidate.is_file():
                return candidate
        raise CheckpointError(f"no checkpoint in {path}: expected {path}/checkpoints/best.ckpt or last.ckpt (did training finish an epoch?)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    return path


def run_dir_of(checkpoint: Path) -> Path | None:
    """The training run directory a checkpoint belongs to, if it has Hydra's record."""
    candidate = checkpoint.parent.parent
    return candidate if (candidate / ".hydra").is_dir() else None


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
