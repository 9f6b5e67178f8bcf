"""Hydra entry point: ``cvaezoo-train model=cvae2 net=conv data=digits seed=3``.

``train(cfg)`` is a plain function (used by tests and sweeps); ``main`` is the thin Hydra wrapper.
It fits the model, tests the best checkpoint, and writes into the run directory:
``checkpoints/{best,last}.ckpt``, ``metrics.csv`` (every logged term), ``results.json`` (final
test metrics) and ``samples.png`` (one row per label).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from cvaezoo.inference import label_grid
from cvaezoo.viz import save_image_grid

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def build(cfg: DictConfig) -> tuple[L.LightningDataModule, L.LightningModule]:
    """Instantiate the data module and a model sized for its data."""
    datamodule = instantiate(cfg.data)
    spec = datamodule.spec
    model = instantiate(
        cfg.model,
        x_shape=list(spec.x_shape),
        y_kind=spec.y_kind,
        y_dim=spec.y_dim,
        net=OmegaConf.to_container(cfg.net, resolve=True),
        class_prior=datamodule.class_prior(),
        _convert_="all",
    )
    return datamodule, model


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
    os.replace(tmp, path)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, test and write the run's files; returns the final test metrics."""
    L.seed_everything(cfg.seed, workers=True)
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    datamodule, model = build(cfg)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    logger = instantiate(cfg.logger) if cfg.get("logger") else False
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger)
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))

    has_best = bool(getattr(trainer.checkpoint_callback, "best_model_path", ""))
    tested = trainer.test(model, datamodule=datamodule, ckpt_path="best" if has_best else None, verbose=False)
    metrics = {key: float(value) for key, value in tested[0].items()}
    if has_best:
        metrics["val/elbo_best"] = float(trainer.checkpoint_callback.best_model_score)
    if trainer.is_global_zero:
        results = {"model": cfg.model._target_.rsplit(".", 1)[-1].lower(), "seed": cfg.seed, **metrics}
        write_json_atomic(run_dir / "results.json", results)
        test_images = datamodule.splits["test"].tensors[0]
        save_image_grid(label_grid(model, test_images, cfg.n_samples_per_class), run_dir / "samples.png")
        print(f"cvaezoo: test/elbo={metrics.get('test/elbo', float('nan')):.2f} nats; run directory {run_dir}")
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> float:
    """Train; returns the best validation negative ELBO (what a sweeper minimises)."""
    metrics = train(cfg)
    return -metrics.get("val/elbo_best", float("nan"))


if __name__ == "__main__":
    main()
