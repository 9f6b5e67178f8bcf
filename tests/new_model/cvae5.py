"""CVAE-5, a model added the way CONTRIBUTING.md says (tests/test_new_model.py copies it into the package):
q(z|x,y), p(z|y) = N(mu_y, I) with one learned mean per class, p(x|z,y). Bound:
    log p(x|y) >= E_q(z|x,y)[log p(x|z,y)] - KL(q(z|x,y) || N(mu_y, I))
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cvaezoo.distributions import DiagonalGaussian
from cvaezoo.models.bound import ConditionalVAE


class CVAE5(ConditionalVAE):
    """A learned mean per class and unit variance as the prior; the decoder sees z and y."""

    def build_networks(self) -> None:
        self.class_means = nn.Linear(self.y_dim, self.latent_dim, bias=False)
        self.decoder_net = self.decoder(self.latent_dim + self.y_dim, self.x_shape)

    def prior(self, x: Tensor | None, c: Tensor) -> DiagonalGaussian:
        mean = self.class_means(c)
        return DiagonalGaussian(mean, torch.zeros_like(mean))

    def likelihood_params(self, z: Tensor, x: Tensor | None, c: Tensor) -> Tensor:
        return self.decoder_net(torch.cat([z, c], dim=-1))
