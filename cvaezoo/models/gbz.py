"""GBZ: Li et al. (2019)'s generative bottleneck factorisation with the label below z.

Graph: p(z) = N(0, I), p(y|z), p(x|z); q(z|x,y). The decoder never sees y. Bound:
    log p(x, y) >= E_q(z|x,y)[log p(x|z) + log p(y|z)] - KL(q(z|x,y) || N(0, I))
Classifier mode: Bayes rule over the bound, p(y|x) ∝ p(x, y).
"""

from __future__ import annotations

from torch import Tensor

from cvaezoo.models.joint import JointVAE


class GBZ(JointVAE):
    """z generates y and x; the decoder sees z only."""

    display_name = "GBZ"

    decoder_sees_condition = False

    def build_networks(self) -> None:
        self.label_net = self.label_network(self.latent_dim)
        self.decoder_net = self.decoder(self.latent_dim, self.x_shape)

    def label_logits(self, z: Tensor, x: Tensor) -> Tensor:
        return self.label_net(z)

    def likelihood_params(self, z: Tensor, x: Tensor | None, c: Tensor | None) -> Tensor:
        return self.decoder_net(z)
