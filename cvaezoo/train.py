"""Hydra entry point: ``cvaezoo-train model=cvae2 net=conv data=digits seed=3``.

``train(cfg)`` is a plain function (used by tests and sweeps); ``main`` is the thin Hydra wrapper.
It fits the model, tests the best checkpoint, and writes into the run directory:
``checkpoints/{best,last}.ckpt``, ``metrics.csv`` (every logged term), ``results.json`` (final
test metrics) and ``samples.png`` (one row per label).
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import numpy as np
import torch
from hydra.utils import get_class, instantiate
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from cvaezoo.errors import one_line_errors
from cvaezoo.figures import summary_grid
from cvaezoo.loggers import resume_arguments
from cvaezoo.runs import CONFIG_DIR, build, build_callbacks, write_json_atomic
from cvaezoo.viz import save_image_grid


def log_image(logger: Any, key: str, path: Path, step: int) -> None:
    """Send a saved PNG to loggers that show images (wandb, TensorBoard)."""
    if isinstance(logger, WandbLogger):
        logger.log_image(key=key, images=[str(path)], step=step)
    elif isinstance(logger, TensorBoardLogger):
        picture = np.asarray(Image.open(path).convert("RGB"))
        logger.experiment.add_image(key, picture, global_step=step, dataformats="HWC")


def resumed_step(cfg: DictConfig, run_dir: Path) -> int | None:
    """The global step of the checkpoint a resumed run starts from (``ckpt_path``), or None for a fresh run."""
    if not cfg.get("ckpt_path"):
        return None
    path = run_dir / "checkpoints" / "last.ckpt" if cfg.ckpt_path == "last" else Path(cfg.ckpt_path)
    if not path.is_file():
        return None  # Lightning reports the missing checkpoint itself
    return int(torch.load(path, map_location="cpu", weights_only=False, mmap=True)["global_step"])


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, test and write the run's files; returns the final test metrics."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.get("skip_if_done") and (run_dir / "results.json").exists():
        print(f"cvaezoo: {run_dir / 'results.json'} exists; skipping this run (skip_if_done=true)")
        return json.loads((run_dir / "results.json").read_text())
    datamodule, model = build(cfg)
    callbacks = build_callbacks(cfg, model)
    logger = False
    if cfg.get("logger"):
        resume = resume_arguments(get_class(cfg.logger._target_), run_dir, resumed_step(cfg, run_dir))
        logger = instantiate(cfg.logger, **resume)
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
                   "fit_seconds": round(fit_seconds, 1)}
        write_json_atomic(run_dir / "results.json", results)
        grid = summary_grid(model, datamodule, cfg.n_samples_per_class)
        if grid is not None:
            grid_path = save_image_grid(grid, run_dir / "samples.png")
            log_image(logger, "samples", grid_path, trainer.global_step)
        print(f"cvaezoo: test/elbo={metrics.get('test/elbo', float('nan')):.2f} nats; run directory {run_dir}")
    if isinstance(logger, WandbLogger):
        logger.experiment.finish()  # one wandb run per job, also when a multirun shares the process
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> float:
    """Train; returns the best value of the checkpoint metric, as a loss (-val/elbo by default): what a sweeper minimises.

    A bad config value, data or checkpoint ends the run with one line naming it (HYDRA_FULL_ERROR=1: traceback).
    """
    with one_line_errors("cvaezoo-train"):
        metrics = train(cfg)
    return metrics.get("objective", float("nan"))


if __name__ == "__main__":
    main()
