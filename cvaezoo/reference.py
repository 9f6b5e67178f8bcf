"""A small supervised classifier that scores generated images (conditional-generation accuracy).

``cvaezoo-reference data=mnist5k`` trains it on the same training split the models use and saves
``runs/reference/<data>/reference.ckpt``; ``cvaezoo-evaluate`` then labels generated samples with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import hydra
import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from cvaezoo.attributes import attribute_loss, attributes_from_scores, group_matches
from cvaezoo.errors import UserError, one_line_errors
from cvaezoo.nets import Encoder, NetConfig
from cvaezoo.runs import CONFIG_DIR, instantiate_checked, write_json_atomic


class ReferenceClassifier(L.LightningModule):
    """p(y|x) by a conv or MLP encoder and a linear layer, trained by cross-entropy.

    With ``attribute_groups`` (multi-hot data) it predicts attribute vectors instead: one softmax per
    one-of-k group and one sigmoid per binary attribute; its accuracy is the mean over groups.
    """

    def __init__(self, x_shape: Sequence[int], num_classes: int, net: dict | None = None, lr: float = 1e-3,
                 attribute_groups: Sequence[int] | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.groups = list(attribute_groups) if attribute_groups else None
        if self.groups is not None and sum(self.groups) != num_classes:
            raise UserError(f"attribute_groups {self.groups} do not add up to the {num_classes} attributes")
        self.encoder = Encoder(x_shape, 0, NetConfig.from_dict(net))
        self.head = nn.Linear(self.encoder.out_dim, num_classes)
        if self.groups is None:
            self.accuracy = nn.ModuleDict({s: MulticlassAccuracy(num_classes, average="micro") for s in ("val", "test")})
        else:
            self.accuracy = nn.ModuleDict({s: MeanMetric() for s in ("val", "test")})

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(x))

    @torch.no_grad()
    def classify(self, x: Tensor) -> Tensor:
        """Class indices (B,), or 0/1 attribute vectors (B, A) for attribute data."""
        scores = self(x)
        return scores.argmax(-1) if self.groups is None else attributes_from_scores(scores, self.groups)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        scores = self(x)
        loss = F.cross_entropy(scores, y) if self.groups is None else attribute_loss(scores, y, self.groups).mean()
        self.log("train/loss", loss)
        return loss

    def _eval_step(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        x, y = batch
        if self.groups is None:
            self.accuracy[stage](self(x), y)
        else:
            self.accuracy[stage](group_matches(self.classify(x), y, self.groups).float())
        self.log(f"{stage}/accuracy", self.accuracy[stage], on_epoch=True, prog_bar=True)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def train_reference(cfg: DictConfig) -> dict[str, float]:
    L.seed_everything(cfg.seed, workers=True)
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
