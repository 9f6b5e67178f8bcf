"""CVAE-2: the label is independent of z (the generative part of Kingma et al.'s M2).

Graph: q(z|x,y), p(z) = N(0, I), p(x|z,y). Bound:
    log p(x|y) >= E_q(z|x,y)[log p(x|z,y)] - KL(q(z|x,y) || N(0, I))
"""

from __future__ import annotations

import torch
from torch import Tensor

from cvaezoo.distributions import DiagonalGaussian
from cvaezoo.models.bound import ConditionalVAE


class CVAE2(ConditionalVAE):
    """Fixed prior N(0, I) with no parameters; the decoder sees z and y."""

    display_name = "CVAE-2"

    def build_networks(self) -> None:
        self.decoder_net = self.decoder(self.latent_dim + self.y_dim, self.x_shape)

    def prior(self, x: Tensor | None, c: Tensor) -> DiagonalGaussian:
        return DiagonalGaussian.standard(c.new_zeros(c.shape[0], self.latent_dim))

    def likelihood_params(self, z: Tensor, x: Tensor | None, c: Tensor) -> Tensor:
        return self.decoder_net(torch.cat([z, c], dim=-1))
