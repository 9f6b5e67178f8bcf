"""M2: semi-supervised learning with CVAE-2 and a classifier (Kingma, Rezende, Mohamed & Welling, 2014).

Generative model p(y) p(z) p(x|z,y) with p(z) = N(0, I) (CVAE-2's), inference q(z|x,y) and q(y|x).
Labelled x:    B(x, y) = E_q(z|x,y)[log p(x|z,y)] - KL(q(z|x,y) || N(0, I)) + log p(y) <= log p(x, y)
Unlabelled x:  U(x) = sum_y q(y|x) B(x, y) + H(q(y|x)) <= log p(x), all classes in one batched pass
Loss: -mean_labelled B - mean_unlabelled U + alpha * mean_labelled[-log q(y|x)].
Both bounds are taken alike: ``model.n_samples`` posterior draws and the same KL weight (beta
times warm-up), so that warm-up or beta != 1 changes one objective, not two different ones.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from cvaezoo.errors import UserError
from cvaezoo.models.conditional import ClassifierMode
from cvaezoo.models.cvae2 import CVAE2
from cvaezoo.models.training import ElboTerms


def marginal_bound(class_bounds: Tensor, log_q: Tensor) -> Tensor:
    """sum_y q(y|x) B(x,y) + H(q(y|x)), per example; equals logsumexp_y B when q is softmax(B)."""
    q = log_q.exp()
    return (q * class_bounds).sum(-1) - (q * log_q).sum(-1)


class M2(CVAE2):
    """CVAE-2 plus q(y|x); learns from labelled and unlabelled batches (``data.labels_per_class``)."""

    display_name = "M2"

    # accuracy: of q(y|x) on labelled examples; unlabelled_bound: U(x), on unlabelled training batches only
    zoo = False  # a variant of CVAE-2, not one of the zoo's conditional VAEs
    extra_terms = ("classifier_nll", "accuracy", "unlabelled_bound")
    classifier_methods = {"classifier": 0}  # q(y|x)
    condition_kinds = ("class",)  # q(y|x) classifies

    def __init__(self, *args, alpha: float = 100.0, use_unlabelled: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        if alpha < 0:
            raise UserError(f"model.alpha must be >= 0, got {alpha}")

    def build_networks(self) -> None:
        super().build_networks()
        self.classifier_trunk, features = self.encoder(self.x_shape, 0)
        self.classifier_head = nn.Linear(features, self.y_dim)

    def classifier_log_probs(self, x: Tensor) -> Tensor:
        """log q(y|x), (B, C)."""
        return F.log_softmax(self.classifier_head(self.classifier_trunk(x)), dim=-1)

    def unlabelled_bound(self, x: Tensor, kl_weight: float = 1.0) -> Tensor:
        """U(x) <= log p(x), per example (with kl_weight 1; training passes its current KL weight)."""
        bounds = self.class_bounds(x, samples=self.hparams.n_samples, kl_weight=kl_weight)
        return marginal_bound(bounds + self.log_class_prior, self.classifier_log_probs(x))

    def predictive_log_probs(self, x: Tensor, mode: ClassifierMode) -> Tensor:
        """Classifier mode uses q(y|x) (its one method, "classifier")."""
        self.check_x(x)
        return self.classifier_log_probs(x)

    def training_loss(self, x: Tensor, y: Tensor, terms: ElboTerms, kl_weight: float) -> Tensor:
        """Labelled examples: -B(x, y) (up to the constant log p(y)) + alpha * -log q(y|x)."""
        log_q = self.classifier_log_probs(x)
        classifier_nll = F.nll_loss(log_q, y, reduction="none")
        terms.extras["classifier_nll"] = classifier_nll
        terms.extras["accuracy"] = (log_q.argmax(-1) == y).float()
        return super().training_loss(x, y, terms, kl_weight) + self.hparams.alpha * classifier_nll

    def training_step(self, batch: tuple[Tensor, Tensor] | dict, batch_idx: int) -> Tensor:
        unlabelled = None
        if isinstance(batch, dict):
            batch, unlabelled = batch["labelled"], batch["unlabelled"][0]
        loss = self._shared_step(batch, "train")  # the labelled objective, logged under train/*
        if unlabelled is None or not self.hparams.use_unlabelled:
            return loss
        bound = self.unlabelled_bound(unlabelled, kl_weight=self.kl_weight())
        self.accumulate("train", ("unlabelled_bound",), bound[None])  # checked by the guard with the rest
        return loss - bound.mean()
