"""CVAE-3: Sohn et al. (2015), a predictive model of y given x.

Graph: q(z|x,y), p(z|x), p(y|x,z). Bound:
    log p(y|x) >= E_q(z|x,y)[log p(y|x,z)] - KL(q(z|x,y) || p(z|x))
"""

from __future__ import annotations

import torch
from torch import Tensor

from cvaezoo.distributions import DiagonalGaussian
from cvaezoo.models.base import ConditionalVAE, repeat_samples
from cvaezoo.nets import GaussianHead


class CVAE3(ConditionalVAE):
    """Conditional prior p(z|x); the likelihood is over y (categorical for class labels)."""

    target_name = "y"

    def build_networks(self) -> None:
        self.prior_net = GaussianHead(*self.encoder(self.x_shape, 0), self.latent_dim)
        self.predictor_trunk, features = self.encoder(self.x_shape, self.latent_dim)
        self.predictor_head = self.decoder(features, self.target_shape())

    def target_shape(self) -> tuple[int, ...]:
        return (self.y_dim,)

    def prior(self, x: Tensor, c: Tensor | None) -> DiagonalGaussian:
        return self.prior_net(x)

    def likelihood_params(self, z: Tensor, x: Tensor, c: Tensor | None) -> Tensor:
        return self.predictor_head(self.predictor_trunk(x, z))

    def generation_inputs(self, condition: Tensor) -> tuple[Tensor, None]:
        """CVAE-3 generates y: the condition is an input x."""
        self.check_x(condition)
        return condition, None

    @torch.no_grad()
    def predict_proba(self, x: Tensor, k: int = 0, method: str = "mc") -> Tensor:
        """p(y|x) = E_p(z|x)[p(y|x,z)]: with k=0 (or method "mean") z is the prior mean, else k samples."""
        self.check_x(x)
        if self.y_kind != "class":
            raise ValueError("predict_proba needs class labels; use sample(x, n) for structured outputs")
        prior = self.prior(x, None)
        z = prior.mean[None] if k == 0 or method == "mean" else prior.rsample(k)
        logits = self.likelihood_params(z.flatten(0, 1), repeat_samples(x, z.shape[0]), None)
        return torch.softmax(logits, dim=-1).view(z.shape[0], x.shape[0], -1).mean(0)
