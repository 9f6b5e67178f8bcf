"""CVAE-1: label-conditioned prior and posterior.

Graph: q(z|x,y), p(z|y), p(x|z,y). Bound:
    log p(x|y) >= E_q(z|x,y)[log p(x|z,y)] - KL(q(z|x,y) || p(z|y))
"""

from __future__ import annotations

import torch
from torch import Tensor

from cvaezoo.distributions import DiagonalGaussian
from cvaezoo.models.bound import ConditionalVAE
from cvaezoo.nets import GaussianHead


class CVAE1(ConditionalVAE):
    """Learned prior p(z|y); the decoder sees z and y."""

    display_name = "CVAE-1"

    def build_networks(self) -> None:
        self.prior_net = GaussianHead(*self.condition_mlp(self.y_dim), self.latent_dim)
        self.decoder_net = self.decoder(self.latent_dim + self.y_dim, self.x_shape)

    def prior(self, x: Tensor | None, c: Tensor) -> DiagonalGaussian:
        return self.prior_net(c)

    def likelihood_params(self, z: Tensor, x: Tensor | None, c: Tensor) -> Tensor:
        return self.decoder_net(torch.cat([z, c], dim=-1))
