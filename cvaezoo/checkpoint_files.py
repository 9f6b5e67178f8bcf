"""Where a run keeps its checkpoints: a run directory or a .ckpt file -> the checkpoint file, and reading one.

Below the models in the import layers (a model that starts from another model's checkpoint, such as CVAE-3
from a baseline, finds it here). Every reader of a checkpoint file goes through :func:`read_checkpoint`, so a
truncated or corrupt file is the same one-line error in every tool.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cvaezoo.errors import UserError, first_line


class CheckpointError(UserError):
    """A checkpoint that is missing, unreadable, or of the wrong kind."""


#: What a checkpoint's weights mean, saved in each as "cvaezoo_format" (no entry: 1). 2 (#27): the discretised
#: logistic's log-scale is its raw output clamped to [-9, 7], where format 1 squashed it into [-6, 4] by a tanh.
CHECKPOINT_FORMAT = 3
FORMAT_CHANGES = {  # format -> what its weights mean that those of the format before did not
    2: "the discretised logistic's log-scale is clamped to [-9, 7], it was a tanh into [-6, 4]",
    3: "pixel likelihoods mix in a uniform outlier (model.pixel_outlier_weight); an older checkpoint loads with none",
}


def check_checkpoint_format(checkpoint: dict[str, Any], oldest_readable: int) -> None:
    """Refuse (CheckpointError) a checkpoint written by a newer cvaezoo, or by one older than ``oldest_readable``,
    the oldest format whose weights mean the same model here (a likelihood whose parametrisation changed); the
    message names every change (``FORMAT_CHANGES``) between the two."""
    stored = int(checkpoint.get("cvaezoo_format", 1))
    if stored > CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint format {stored} was written by a newer cvaezoo (this one reads up to {CHECKPOINT_FORMAT}): upgrade cvaezoo")
    if stored < oldest_readable:
        changes = "; ".join(f"format {n}: {FORMAT_CHANGES[n]}" for n in range(stored + 1, oldest_readable + 1))
        raise CheckpointError(
            f"checkpoint format {stored} predates a change of what its weights mean ({changes}); loading it "
            "would give another distribution than the one it was trained as: retrain it with this cvaezoo"
        )


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



def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint dict saved at ``path``, on the CPU, read without unpickling anything but tensors and plain
    values (``weights_only=True``: a pickle can run code); a damaged file, one that holds other objects, or one
    that holds no checkpoint, is a CheckpointError naming it."""
    import pickle
    import zipfile

    import torch

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not zipfile.is_zipfile(path):  # not torch's archive: bytes that are no checkpoint
            raise CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt?): {first_line(exc)}") from exc
        raise CheckpointError(
            f"{path} holds Python objects besides tensors and plain values, which cvaezoo does not unpickle (loading "
            "them can run code): export it where it was trained (cvaezoo-export) and load the export"
        ) from exc
    except Exception as exc:  # torch raises many types for a damaged file
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt?): {first_line(exc)}") from exc
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path} is not a checkpoint: it holds a {type(checkpoint).__name__}")
    return checkpoint


def check_checkpoint_fits(checkpoint: dict[str, Any], model_name: str, own_state: dict[str, Any]) -> None:
    """Refuse (CheckpointError) a checkpoint that is not cvaezoo's, holds another model, or holds the same model
    sized differently (its weights' names or shapes differ from ``own_state``, the configured model's)."""
    stored = checkpoint.get("cvaezoo_model")
    if stored is None:
        raise CheckpointError("not a cvaezoo checkpoint: it has no 'cvaezoo_model' entry")
    if stored != model_name:
        raise CheckpointError(f"checkpoint holds a {stored} model, but a {model_name} model was configured")
    stored_state = checkpoint.get("state_dict", {})
    missing, unexpected = sorted(set(own_state) - set(stored_state)), sorted(set(stored_state) - set(own_state))
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint does not fit this {model_name}: missing {missing[:3]}, unexpected {unexpected[:3]} "
            "(trained with another net kind?)"
        )
    for key, tensor in stored_state.items():
        if tensor.shape != own_state[key].shape:
            raise CheckpointError(
                f"checkpoint does not fit this {model_name}: {key} has shape {tuple(tensor.shape)} in the "
                f"checkpoint but {tuple(own_state[key].shape)} here (trained with other sizes: latent_dim, net, data?)"
            )
