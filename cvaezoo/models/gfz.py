"""GFZ: Li et al. (2019)'s generative, fully connected factorisation with the label below z.

Graph: p(z) = N(0, I), p(y|z), p(x|y,z); q(z|x,y). Bound:
    log p(x, y) >= E_q(z|x,y)[log p(x|y,z) + log p(y|z)] - KL(q(z|x,y) || N(0, I))
Classifier mode: Bayes rule over the bound, p(y|x) ∝ p(x, y).
"""

from __future__ import annotations

import torch
from torch import Tensor

from cvaezoo.models.joint import JointVAE


class GFZ(JointVAE):
    """z generates y; the decoder sees z and y."""

    display_name = "GFZ"

    def build_networks(self) -> None:
        self.label_net = self.label_network(self.latent_dim)
        self.decoder_net = self.decoder(self.latent_dim + self.y_dim, self.x_shape)

    def label_logits(self, z: Tensor, x: Tensor) -> Tensor:
        return self.label_net(z)

    def likelihood_params(self, z: Tensor, x: Tensor | None, c: Tensor) -> Tensor:
        return self.decoder_net(torch.cat([z, c], dim=-1))
