"""DBX: Li et al. (2019)'s discriminative bottleneck factorisation, a predictive model of y given x through z.

Graph: p_D(x) (the data), p(z|x), p(y|z); q(z|x,y). The label is predicted from z alone: everything the image
says about y must pass through z. Bound (as CVAE-3's, whose graph differs only in p(y|x,z)):
    log p(y|x) >= E_q(z|x,y)[log p(y|z)] - KL(q(z|x,y) || p(z|x))
Classifier mode: CVAE-3's, p(y|x) = E_p(z|x)[p(y|z)] ("mc", "mean"), or the bound normalised over classes ("iwae").
"""

from __future__ import annotations

from torch import Tensor

from cvaezoo.models.cvae3 import CVAE3
from cvaezoo.nets import GaussianHead


class DBX(CVAE3):
    """Conditional prior p(z|x); the likelihood of y sees z only."""

    display_name = "DBX"

    zoo = False  # Li et al.'s factorisations beside the zoo's conditional VAEs

    def build_networks(self) -> None:
        self.prior_net = GaussianHead(*self.encoder(self.x_shape, 0), self.latent_dim)
        self.predictor_head = self.decoder(self.latent_dim, self.target_shape())

    def likelihood_params(self, z: Tensor, x: Tensor, c: Tensor | None) -> Tensor:
        return self.predictor_head(z)
