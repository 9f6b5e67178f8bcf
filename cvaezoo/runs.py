"""The run library: what the entry points share, and no entry point owns.

The Hydra configs ship inside the package (``cvaezoo/conf``, also reachable as the top-level
``conf/`` of a source checkout), so an installed cvaezoo composes them from any working directory.
A user's own config folder is added with Hydra's ``--config-dir DIR`` (or
``hydra.searchpath=[file://DIR]``); its groups extend and override the shipped ones.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import yaml
from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from cvaezoo.errors import UserError

CONFIG_DIR = str(Path(__file__).resolve().parent / "conf")


def compose_config(overrides: Sequence[str] = (), config_name: str = "config") -> DictConfig:
    """The composed config, as ``cvaezoo-train`` would see it with these overrides."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


def instantiate_checked(node: DictConfig, **kwargs: Any) -> Any:
    """hydra.utils.instantiate, re-raising our own validation errors unwrapped (they name the key)."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as exc:
        if isinstance(exc.__cause__, UserError):
            raise exc.__cause__ from None
        raise


def build(cfg: DictConfig) -> tuple[L.LightningDataModule, L.LightningModule]:
    """Instantiate the data module and a model sized for its data."""
    datamodule = instantiate_checked(cfg.data)
    spec = datamodule.spec
    model = instantiate_checked(
        cfg.model,
        x_shape=list(spec.x_shape),
        y_kind=spec.y_kind,
        y_dim=spec.y_dim,
        net=OmegaConf.to_container(cfg.net, resolve=True),
        class_prior=datamodule.class_prior(),
        pixel_levels=spec.pixel_levels,
        _convert_="all",
    )
    return datamodule, model


def build_callbacks(cfg: DictConfig, model: L.LightningModule) -> list[L.Callback]:
    """The configured callbacks; a checkpoint callback with ``monitor: null`` monitors the model's own choice."""
    callbacks = []
    for node in (cfg.get("callbacks") or {}).values():
        choice = {}
        if "monitor" in node and node.monitor is None:
            monitor, mode = model.checkpoint_metric()
            choice = {"monitor": monitor, "mode": node.get("mode") or mode}
        callbacks.append(instantiate(node, **choice))
    return callbacks


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON through a temporary file and a rename, so a reader never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
    os.replace(tmp, path)


def merge_overrides(saved: list[str], new: list[str]) -> list[str]:
    """Saved training overrides, replaced by new ones for the same key (a new ``data=...`` drops saved ``data.*``)."""
    merged: dict[str, str] = {}
    for item in saved:
        if "=" in item and not item.lstrip("+~").startswith("hydra."):
            merged[item.split("=", 1)[0]] = item
    for item in new:
        key = item.split("=", 1)[0]
        if "." not in key.lstrip("+~"):  # a group choice: forget that group's saved values
            merged = {k: v for k, v in merged.items() if not k.lstrip("+~").startswith(key.lstrip("+~") + ".")}
        merged[key] = item
    return list(merged.values())


def saved_overrides(run_dir: Path | None) -> list[str]:
    """The command-line overrides a training run was started with (from Hydra's record), or []."""
    if run_dir is None or not (run_dir / ".hydra" / "overrides.yaml").exists():
        return []
    return yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text()) or []


def load_run_data(run_dir: Path | None, overrides: list[str], x_shape: Sequence[int], y_dim: int):
    """The data config a run was trained with (plus ``overrides``), checked against the model's sizes."""
    cfg = compose_config([*merge_overrides(saved_overrides(run_dir), overrides), "run_dir=."])
    datamodule = instantiate_checked(cfg.data)
    spec = datamodule.spec
    if tuple(spec.x_shape) != tuple(x_shape) or spec.y_dim != y_dim:
        raise UserError(
            f"the data has x of shape {tuple(spec.x_shape)} and {spec.y_dim} classes, but the model was trained on "
            f"x of shape {tuple(x_shape)} and {y_dim} classes"
        )
    return datamodule
