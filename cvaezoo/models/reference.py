"""The reference classifier: a plain discriminative network p(y|x) (a conv or MLP encoder and a linear
layer, trained by cross-entropy) that scores generated images (conditional-generation accuracy) and
is the discriminative baseline of classifier mode. ``cvaezoo-reference`` trains it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from cvaezoo.attributes import attribute_loss, attributes_from_scores, group_matches
from cvaezoo.checkpoint_files import CheckpointError, read_checkpoint, resolve_checkpoint
from cvaezoo.errors import UserError, first_line
from cvaezoo.nets import Encoder, NetConfig


class ReferenceClassifier(L.LightningModule):
    """p(y|x) by a conv or MLP encoder and a linear layer, trained by cross-entropy.

    With ``attribute_groups`` (multi-hot data) it predicts attribute vectors instead: one softmax per
    one-of-k group and one sigmoid per binary attribute; its accuracy is the mean over groups.
    """

    def __init__(self, x_shape: Sequence[int], y_kind: str = "class", y_dim: int = 10, net: dict | None = None,
                 lr: float = 1e-3, attribute_groups: Sequence[int] | None = None,
                 class_prior: Sequence[float] | None = None, pixel_levels: int | None = None,
                 class_names: Sequence[str] | None = None, likelihood_kwargs: dict | None = None):
        """Built from the data's spec like every model (``class_prior`` and ``pixel_levels`` are not needed here;
        ``likelihood_kwargs`` is unused, accepted for the checkpoints of cvaezoo 52b448a..#28, which recorded it:
        ``cvaezoo-reference`` now drops the generative models' keys an experiment sets)."""
        super().__init__()
        self.save_hyperparameters()
        self.groups = list(attribute_groups) if y_kind == "multihot" and attribute_groups else None
        if y_kind == "multihot" and self.groups is None:
            raise UserError("the reference classifier needs the attribute groups of multi-hot data")
        if self.groups is not None and sum(self.groups) != y_dim:
            raise UserError(f"attribute_groups {self.groups} do not add up to the {y_dim} attributes")
        if y_kind == "vector":
            raise UserError("the reference classifier predicts class labels or attributes, not vector outputs")
        self.encoder = Encoder(x_shape, 0, NetConfig.from_dict(net))
        self.head = nn.Linear(self.encoder.out_dim, y_dim)
        if self.groups is None:
            self.accuracy = nn.ModuleDict({s: MulticlassAccuracy(y_dim, average="micro") for s in ("val", "test")})
        else:
            self.accuracy = nn.ModuleDict({s: MeanMetric() for s in ("val", "test")})

    @property
    def model_name(self) -> str:
        return "reference"

    def checkpoint_metric(self) -> tuple[str, str]:
        return "val/accuracy", "max"

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


def load_reference_checkpoint(path: str | Path) -> ReferenceClassifier:
    """A trained reference classifier from its run directory or .ckpt, on the CPU, in eval mode; a damaged
    checkpoint, or one of another model, is a CheckpointError naming the file. (Any name, an export's included:
    :func:`cvaezoo.checkpoints.load_reference`.)"""
    checkpoint_path = resolve_checkpoint(path)
    model_name = read_checkpoint(checkpoint_path).get("cvaezoo_model")  # the generative models note theirs
    if model_name is not None:
        raise CheckpointError(f"{checkpoint_path} holds a {model_name} model, not a reference classifier "
                              "(train one: cvaezoo-reference)")
    try:
        return ReferenceClassifier.load_from_checkpoint(checkpoint_path, map_location="cpu", weights_only=True).eval()
    except (KeyError, TypeError, RuntimeError) as exc:  # no hyper-parameters, other ones, other weights
        reason = first_line(exc)
        raise CheckpointError(f"{checkpoint_path} is not a reference classifier checkpoint: {reason}") from exc
