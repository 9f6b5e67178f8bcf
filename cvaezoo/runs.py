"""The run library: what the entry points share, and no entry point owns, :func:`train` first.

The Hydra configs ship inside the package (``cvaezoo/conf``, also reachable as the top-level
``conf/`` of a source checkout), so an installed cvaezoo composes them from any working directory.
A user's own config folder is added with Hydra's ``--config-dir DIR`` (or
``hydra.searchpath=[file://DIR]``); its groups extend and override the shipped ones.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, InstantiationException
from hydra.experimental.callback import Callback as HydraCallback
from hydra.utils import get_class, instantiate
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from cvaezoo.checkpoint_files import CheckpointError, read_checkpoint
from cvaezoo.commit import source_commit
from cvaezoo.config_types import check_config, check_node
from cvaezoo.errors import UserError
from cvaezoo.figures import summary_grid
from cvaezoo.loggers import resume_arguments
from cvaezoo.models import ConditionalModel
from cvaezoo.viz import save_image_grid

CONFIG_DIR = str(Path(__file__).resolve().parent / "conf")


def compose_config(overrides: Sequence[str] = (), config_name: str = "config",
                   return_hydra_config: bool = False) -> DictConfig:
    """The composed config, as ``cvaezoo-train`` would see it with these overrides (with its ``hydra`` node, the
    run directory and the group choices, if ``return_hydra_config``)."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides), return_hydra_config=return_hydra_config)


def instantiate_checked(node: DictConfig, **kwargs: Any) -> Any:
    """hydra.utils.instantiate after checking the types of the node's values, re-raising our own validation
    errors unwrapped (they name the key)."""
    check_node(node, node._get_full_key(None) or "config")
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as exc:
        if isinstance(exc.__cause__, UserError):
            raise exc.__cause__ from None
        raise


def build(cfg: DictConfig) -> tuple[L.LightningDataModule, L.LightningModule]:
    """Instantiate the data module and a model built from what the data tells every model (its spec)."""
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
        attribute_groups=list(spec.attribute_groups) if spec.attribute_groups else None,
        class_names=list(spec.class_names) if spec.class_names else None,
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


class KeepRunRecord(HydraCallback):
    """Hydra callback (``hydra.callbacks`` in conf/config.yaml): notes a run directory's record (``.hydra/*.yaml``:
    the config and overrides it was trained with) before Hydra replaces it with the new job's, so that a job that
    ends on bad input puts it back (:func:`run_record_kept`). Resuming with a bad value or a damaged checkpoint
    then loses nothing, and a mistyped command leaves no new run directory behind."""

    previous: dict[Path, dict[str, bytes] | None] = {}  # run directory -> its record's files, None: no directory

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.output_subdir is None:
            return
        HydraConfig.instance().set_config(config)  # as Hydra does next, so that hydra.run.dir resolves
        run_dir = Path(os.path.abspath(str(OmegaConf.select(config, "hydra.run.dir"))))
        record = run_dir / str(config.hydra.output_subdir)
        KeepRunRecord.previous[run_dir] = {p.name: p.read_bytes() for p in record.glob("*.yaml")} \
            if run_dir.exists() else None


def _close_logs_in(folder: Path) -> None:
    """Close and detach the logging file handlers (Hydra's job log) that write into ``folder``, so that a later
    record logged in the same process does not try to reopen a file in a removed folder."""
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for handler in list(getattr(logger, "handlers", [])):
            if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).is_relative_to(folder):
                logger.removeHandler(handler)
                handler.close()


@contextmanager
def run_record_kept() -> Iterator[None]:
    """Inside a Hydra job: on a UserError, the run directory's record as it was before the job (see KeepRunRecord),
    and a run directory that the job made and left holding only Hydra's record and log removed."""
    try:
        yield
    except UserError:
        hydra = HydraConfig.get()
        run_dir = Path(hydra.runtime.output_dir)
        if run_dir in KeepRunRecord.previous and hydra.output_subdir is not None:
            previous = KeepRunRecord.previous.pop(run_dir)
            record = run_dir / hydra.output_subdir
            if previous is None:
                if {p.name for p in run_dir.iterdir()} <= {hydra.output_subdir, f"{hydra.job.name}.log"}:
                    _close_logs_in(run_dir)
                    shutil.rmtree(run_dir)
            else:
                for path in record.glob("*.yaml"):
                    if path.name not in previous:
                        path.unlink()
                for name, content in previous.items():
                    (record / name).write_bytes(content)
        raise


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


#: the config groups whose choice decides a run's data (the other groups' saved overrides are not composed for it)
DATA_GROUPS = ("data", "experiment")
#: data keys that say where a download comes from and where it is kept: never taken from a saved record
DOWNLOAD_KEYS = ("mirrors", "sha256", "dataset", "url", "urls", "cache_dir")


def shipped_options(group: str) -> set[str]:
    """The configs a group of the shipped config folder offers (its top-level YAML files' names)."""
    return {path.stem for path in (Path(CONFIG_DIR) / group).glob("*.yaml")}


_SAVED_KEY = re.compile(r"^data(\.[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*)+$")


def data_overrides(saved: Sequence[str], source: str = "the run's record") -> list[str]:
    """The saved overrides that decide a run's data (a choice of a data or experiment config the package ships, a
    plain value of a data key), the others dropped. They come from a file (a run directory's Hydra record, an
    export's config.json) that may have been sent by someone else, and Hydra instantiates what a config names: one
    that deletes or adds a key, names a ``_target_`` or any other underscored key, interpolates (``${...}``) or holds
    a mapping is a UserError naming ``source`` (composing it could run code)."""
    kept = []
    for item in saved:
        if not isinstance(item, str):
            raise UserError(f"{source}: an override must be a string, got {item!r}")
        key, _, value = item.partition("=")
        if key.lstrip("+~").split(".")[0] not in DATA_GROUPS:
            continue
        if key in DATA_GROUPS:
            if value not in shipped_options(key):
                raise UserError(f"{source}: {item}: no such {key} config in cvaezoo (options: "
                                f"{', '.join(sorted(shipped_options(key)))})")
        elif not _SAVED_KEY.match(key) or "{" in value or "$" in value:
            raise UserError(f"{source}: {item} is not a plain data value (a key deleted, added or underscored, an "
                            "interpolation or a mapping): refused, composing it could run code")
        elif key.split(".")[-1] in DOWNLOAD_KEYS:
            raise UserError(f"{source}: {item}: where data is downloaded from is not taken from a file")
        kept.append(item)
    return kept


def run_data_config(saved: Sequence[str], overrides: Sequence[str] = (), source: str = "the run's record") -> DictConfig:
    """The data config of a run trained with the overrides ``saved`` (its Hydra record's, or its export's: only
    those :func:`data_overrides` lets through), plus the user's ``overrides``, composed but not instantiated; an
    override that does not parse or names no config is a UserError (Hydra's message, on one line)."""
    try:
        return compose_config([*merge_overrides(data_overrides(saved, source), list(overrides)), "run_dir=."]).data
    except HydraException as exc:
        given = " ".join(overrides) if overrides else "(none: the run's own)"
        raise UserError(f"override {given}: {hydra_message(exc)}") from None


def hydra_message(exc: Exception) -> str:
    """Hydra's message on one line: its lines joined by "; ", a list of options by ", ", no config search path."""
    parts: list[str] = []
    for line in str(exc).split("Config search path:")[0].splitlines():
        if line.startswith("\t") and parts:
            parts[-1] += (" " if parts[-1].endswith(":") else ", ") + line.strip()
        elif line.strip():
            parts.append(line.strip())
    return "; ".join(parts)


def load_run_data(run_dir: Path | None, overrides: list[str], x_shape: Sequence[int], y_dim: int):
    """The data the run in ``run_dir`` was trained with (plus ``overrides``), checked against the model's sizes."""
    return load_data(saved_overrides(run_dir), overrides, x_shape, y_dim)


def load_data(saved: Sequence[str], overrides: Sequence[str], x_shape: Sequence[int], y_dim: int,
              source: str = "the run's record"):
    """The data of a run trained with the overrides ``saved`` (plus ``overrides``), checked against the model's
    sizes."""
    datamodule = instantiate_checked(run_data_config(saved, overrides, source))
    spec = datamodule.spec
    if tuple(spec.x_shape) != tuple(x_shape) or spec.y_dim != y_dim:
        raise UserError(
            f"the data has x of shape {tuple(spec.x_shape)} and {spec.y_dim} classes, but the model was trained on "
            f"x of shape {tuple(x_shape)} and {y_dim} classes"
        )
    return datamodule


def log_image(logger: Any, key: str, path: Path, step: int) -> None:
    """Send a saved PNG to loggers that show images (wandb, TensorBoard)."""
    if isinstance(logger, WandbLogger):
        logger.log_image(key=key, images=[str(path)], step=step)
    elif isinstance(logger, TensorBoardLogger):
        picture = np.asarray(Image.open(path).convert("RGB"))
        logger.experiment.add_image(key, picture, global_step=step, dataformats="HWC")


def resume_checkpoint(cfg: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    """The checkpoint a resumed run starts from (``ckpt_path``), read and checked before anything is written, or
    None for a fresh run. ``ckpt_path=last`` without a last.ckpt starts afresh, as Lightning does (it warns)."""
    ckpt_path = cfg.get("ckpt_path")
    if not ckpt_path:
        return None
    path = run_dir / "checkpoints" / "last.ckpt" if ckpt_path == "last" else Path(ckpt_path)
    if ckpt_path == "last" and not path.exists():
        return None
    if not path.is_file():
        raise CheckpointError(f"ckpt_path={ckpt_path}: checkpoint {path} does not exist")
    try:
        checkpoint = read_checkpoint(path)
    except CheckpointError as exc:
        raise CheckpointError(f"ckpt_path={ckpt_path}: {exc}") from None
    if "global_step" not in checkpoint or "state_dict" not in checkpoint:
        raise CheckpointError(f"ckpt_path={ckpt_path}: {path} is not a training checkpoint (no global_step or weights)")
    return checkpoint


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, test and write the run's files; returns the final test metrics. Every config value and the checkpoint
    to resume from are checked first: a bad one is a UserError, and nothing is written."""
    check_config(cfg)
    run_dir = Path(cfg.run_dir)
    resume = resume_checkpoint(cfg, run_dir)
    resumed_step = int(resume["global_step"]) if resume is not None else None
    del resume
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.get("skip_if_done") and (run_dir / "results.json").exists():
        print(f"cvaezoo: {run_dir / 'results.json'} exists; skipping this run (skip_if_done=true)")
        return json.loads((run_dir / "results.json").read_text())
    datamodule, model = build(cfg)
    callbacks = build_callbacks(cfg, model)
    logger = False
    if cfg.get("logger"):
        logger = instantiate(cfg.logger, **resume_arguments(get_class(cfg.logger._target_), run_dir, resumed_step))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger)
    if logger:
        logger.log_hyperparams({"config": OmegaConf.to_container(cfg, resolve=True)})
    started = time.perf_counter()
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    except SIGTERMException:  # Lightning's is a SystemExit with status 0; a killed job must not look finished
        raise SystemExit(128 + signal.SIGTERM) from None
    fit_seconds = time.perf_counter() - started

    checkpointing = trainer.checkpoint_callback
    has_best = bool(getattr(checkpointing, "best_model_path", ""))
    tested = trainer.test(model, datamodule=datamodule, ckpt_path="best" if has_best else None, verbose=False)
    metrics = {key: float(value) for key, value in tested[0].items()}
    if has_best:  # e.g. val/elbo_best; "objective" is what a sweeper minimises
        best = float(checkpointing.best_model_score)
        metrics[f"{checkpointing.monitor}_best"] = best
        metrics["objective"] = -best if checkpointing.mode == "max" else best
    if trainer.is_global_zero:
        results = {"model": model.model_name, "seed": cfg.seed, **metrics,
                   "fit_seconds": round(fit_seconds, 1), "commit": source_commit()}
        write_json_atomic(run_dir / "results.json", results)
        grid = summary_grid(model, datamodule, cfg.n_samples_per_class) if isinstance(model, ConditionalModel) else None
        if grid is not None:
            grid_path = save_image_grid(grid, run_dir / "samples.png")
            log_image(logger, "samples", grid_path, trainer.global_step)
        headline = ", ".join(f"{key}={metrics[key]:.4g}" for key in ("test/elbo", "test/accuracy") if key in metrics)
        print(f"cvaezoo: {headline}; run directory {run_dir}")
    if isinstance(logger, WandbLogger):
        logger.experiment.finish()  # one wandb run per job, also when a multirun shares the process
    return metrics
