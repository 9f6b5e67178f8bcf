"""M2: semi-supervised learning with CVAE-2 and a classifier (Kingma, Rezende, Mohamed & Welling, 2014).

Generative model p(y) p(z) p(x|z,y) with p(z) = N(0, I) (CVAE-2's), inference q(z|x,y) and q(y|x).
Labelled x:    B(x, y) = E_q(z|x,y)[log p(x|z,y)] - KL(q(z|x,y) || N(0, I)) + log p(y) <= log p(x, y)
Unlabelled x:  U(x) = sum_y q(y|x) B(x, y) + H(q(y|x)) <= log p(x), all classes in one batched pass
Loss: -mean_labelled B - mean_unlabelled U + alpha * mean_labelled[-log q(y|x)].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from cvaezoo.models.base import STAGES
from cvaezoo.models.cvae2 import CVAE2


def marginal_bound(class_bounds: Tensor, log_q: Tensor) -> Tensor:
    """sum_y q(y|x) B(x,y) + H(q(y|x)), per example; equals logsumexp_y B when q is softmax(B)."""
    q = log_q.exp()
    return (q * class_bounds).sum(-1) - (q * log_q).sum(-1)


class M2(CVAE2):
    """CVAE-2 plus q(y|x); learns from labelled and unlabelled batches (``data.labels_per_class``)."""

    def __init__(self, *args, alpha: float = 100.0, use_unlabelled: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        if alpha < 0:
            raise ValueError(f"model.alpha must be >= 0, got {alpha}")
        if self.y_kind != "class":
            raise ValueError(f"m2 classifies: it needs class labels, but the data's y is a {self.y_kind}")
        self.accuracy = nn.ModuleDict({f"{s}_accuracy": MulticlassAccuracy(self.y_dim, average="micro") for s in STAGES})

    def build_networks(self) -> None:
        super().build_networks()
        self.classifier_trunk, features = self.encoder(self.x_shape, 0)
        self.classifier_head = nn.Linear(features, self.y_dim)

    def classifier_log_probs(self, x: Tensor) -> Tensor:
        """log q(y|x), (B, C)."""
        return F.log_softmax(self.classifier_head(self.classifier_trunk(x)), dim=-1)

    def unlabelled_bound(self, x: Tensor) -> Tensor:
        """U(x) <= log p(x), per example."""
        return marginal_bound(self.class_bounds(x) + self.log_class_prior, self.classifier_log_probs(x))

    @torch.no_grad()
    def predict_proba(self, x: Tensor, **_: object) -> Tensor:
        """Classifier mode uses q(y|x)."""
        self.check_x(x)
        return self.classifier_log_probs(x).exp()

    def training_step(self, batch: tuple[Tensor, Tensor] | dict, batch_idx: int) -> Tensor | None:
        unlabelled = None
        if isinstance(batch, dict):
            batch, unlabelled = batch["labelled"], batch["unlabelled"][0]
        loss = self._shared_step(batch, "train")  # the labelled bound, logged under train/*
        if loss is None:
            return None
        x, y = batch
        log_q = self.classifier_log_probs(x)
        cross_entropy = F.nll_loss(log_q, y)
        self.accuracy["train_accuracy"](log_q, y)
        self.log("train/accuracy", self.accuracy["train_accuracy"], on_step=False, on_epoch=True)
        self.log("train/classifier_nll", cross_entropy, on_step=False, on_epoch=True, batch_size=len(y))
        loss = loss + self.hparams.alpha * cross_entropy
        if unlabelled is not None and self.hparams.use_unlabelled:
            bound = self.unlabelled_bound(unlabelled).mean()
            self.log("train/unlabelled_bound", bound, on_step=False, on_epoch=True, batch_size=len(unlabelled))
            loss = loss - bound
        return loss

    def _evaluate(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        self._shared_step(batch, stage)
        x, y = batch
        self.accuracy[f"{stage}_accuracy"](self.classifier_log_probs(x), y)
        self.log(f"{stage}/accuracy", self.accuracy[f"{stage}_accuracy"], on_step=False, on_epoch=True, prog_bar=True)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")
