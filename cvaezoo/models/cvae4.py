"""CVAE-4: CMMA, the conditional multimodal autoencoder (Pandey & Dukkipati, 2016).

Graph: y -> z -> x, with q(z|x,y), p(z|y), p(x|z). The decoder never sees y, so every bit of
label information in x must pass through z. Bound:
    log p(x|y) >= E_q(z|x,y)[log p(x|z)] - KL(q(z|x,y) || p(z|y))
"""

from __future__ import annotations

from torch import Tensor

from cvaezoo.distributions import DiagonalGaussian
from cvaezoo.models.bound import ConditionalVAE
from cvaezoo.nets import GaussianHead


class CVAE4(ConditionalVAE):
    """Learned prior p(z|y); the decoder sees z only."""

    display_name = "CVAE-4"

    decoder_sees_condition = False

    def build_networks(self) -> None:
        self.prior_net = GaussianHead(*self.condition_mlp(self.y_dim), self.latent_dim)
        self.decoder_net = self.decoder(self.latent_dim, self.x_shape)

    def prior(self, x: Tensor | None, c: Tensor) -> DiagonalGaussian:
        return self.prior_net(c)

    def likelihood_params(self, z: Tensor, x: Tensor | None, c: Tensor | None) -> Tensor:
        return self.decoder_net(z)
