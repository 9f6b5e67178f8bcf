"""DFZ: Li et al. (2019)'s discriminative, fully connected factorisation with a latent cause of x.

Graph: p(z) = N(0, I), p(x|z), p(y|x,z); q(z|x,y). The decoder never sees y; the label is predicted from the
image and z. Bound:
    log p(x, y) >= E_q(z|x,y)[log p(x|z) + log p(y|x,z)] - KL(q(z|x,y) || N(0, I))
Classifier mode: Bayes rule over the bound, p(y|x) ∝ p(x, y). (The predictive E_p(z|x)[p(y|x,z)] would need the
posterior p(z|x) of p(z)p(x|z), which no network here gives; Li et al. classify it by the bound as well.)
"""

from __future__ import annotations

from torch import Tensor

from cvaezoo.models.joint import JointVAE


class DFZ(JointVAE):
    """z generates x; y is predicted from x and z."""

    display_name = "DFZ"

    decoder_sees_condition = False

    def build_networks(self) -> None:
        self.label_trunk, features = self.encoder(self.x_shape, self.latent_dim)
        self.label_head = self.label_network(features)
        self.decoder_net = self.decoder(self.latent_dim, self.x_shape)

    def label_logits(self, z: Tensor, x: Tensor) -> Tensor:
        return self.label_head(self.label_trunk(x, z))

    def likelihood_params(self, z: Tensor, x: Tensor | None, c: Tensor | None) -> Tensor:
        return self.decoder_net(z)
