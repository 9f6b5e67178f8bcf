"""Where a run keeps its checkpoints: a run directory or a .ckpt file -> the checkpoint file.

Path logic only, below the models in the import layers (a model that starts from another model's
checkpoint, such as CVAE-3 from a baseline, finds it here).
"""

from __future__ import annotations

from pathlib import Path

from cvaezoo.errors import UserError


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
