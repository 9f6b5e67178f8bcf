"""VAE: the unconditional reference (Kingma & Welling, 2014); the label is ignored.

Graph: q(z|x), p(z) = N(0, I), p(x|z). Bound:
    log p(x) >= E_q(z|x)[log p(x|z)] - KL(q(z|x) || N(0, I))
Its test -ELBO is the yardstick for how many nats a label is worth to the conditional models.
"""

from __future__ import annotations

from torch import Tensor

from cvaezoo.distributions import DiagonalGaussian
from cvaezoo.errors import UserError
from cvaezoo.models.bound import ConditionalVAE


class VAE(ConditionalVAE):
    """No condition anywhere: the encoded condition is empty."""

    display_name = "VAE"

    zoo = False  # a yardstick, not one of the zoo's conditional VAEs
    classifies = False
    decoder_sees_condition = False
    classifier_methods: dict[str, int] = {}

    @property
    def condition_dim(self) -> int:
        return 0

    def encode_condition(self, y: Tensor) -> Tensor:
        return y.new_zeros((y.shape[0], 0), dtype=self.dtype)

    def build_networks(self) -> None:
        self.decoder_net = self.decoder(self.latent_dim, self.x_shape)

    def prior(self, x: Tensor | None, c: Tensor) -> DiagonalGaussian:
        return DiagonalGaussian.standard(c.new_zeros(c.shape[0], self.latent_dim))

    def likelihood_params(self, z: Tensor, x: Tensor | None, c: Tensor | None) -> Tensor:
        return self.decoder_net(z)

    def class_bounds(self, x: Tensor, samples: int = 1, method: str = "elbo", kl_weight: float = 1.0) -> Tensor:
        raise UserError("vae ignores the label: it has no class-conditional likelihood to classify with")
