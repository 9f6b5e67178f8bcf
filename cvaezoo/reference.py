"""A small supervised classifier that scores generated images (conditional-generation accuracy).

``cvaezoo-reference data=mnist5k`` trains it on the same training split the models use and saves
``runs/reference/<data>/reference.ckpt``; ``cvaezoo-evaluate`` then labels generated samples with it.
"""

from __future__ import annotations

from pathlib import Path

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from cvaezoo.errors import one_line_errors
from cvaezoo.models.reference import ReferenceClassifier
from cvaezoo.runs import CONFIG_DIR, instantiate_checked, write_json_atomic


def train_reference(cfg: DictConfig) -> dict[str, float]:
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    run_dir = Path(cfg.run_dir)
    datamodule = instantiate_checked(cfg.data)
    spec = datamodule.spec
    groups = getattr(datamodule, "attribute_groups", None) if spec.y_kind == "multihot" else None
    model = ReferenceClassifier(spec.x_shape, spec.y_dim, OmegaConf.to_container(cfg.net, resolve=True), cfg.lr, groups)
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    trainer.fit(model, datamodule=datamodule)
    metrics = {k: float(v) for k, v in trainer.test(model, datamodule=datamodule, verbose=False)[0].items()}
    trainer.save_checkpoint(run_dir / "reference.ckpt")
    write_json_atomic(run_dir / "results.json", metrics)
    print(f"cvaezoo-reference: test accuracy {metrics['test/accuracy']:.4f}; saved {run_dir / 'reference.ckpt'}")
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="reference")
def main(cfg: DictConfig) -> None:
    with one_line_errors("cvaezoo-reference"):
        train_reference(cfg)


if __name__ == "__main__":
    main()
