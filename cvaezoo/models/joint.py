"""Models of the image and its label together: the generative factorisations of Li, Bradshaw & Sharma (2019,
"Are generative classifiers more robust to adversarial attacks?") whose latent z explains y as well as x.

A model file gives p(z) (here N(0, I)), the image's likelihood p(x|z, ...) and the label's p(y|z, ...)
(``label_logits``); q(z|x,y) is the zoo's. The bound is on the joint:
    log p(x, y) >= E_q(z|x,y)[log p(x|z,...) + log p(y|z,...)] - KL(q(z|x,y) || p(z))
logged as ``recon`` (both likelihood terms) with ``label_nll`` = -E_q[log p(y|z,...)] beside it. Classifier mode is
Bayes rule over that bound, which already holds the label's probability (no class prior is added), and
generation samples p(z|y) by importance resampling from p(z): the label's probability weighs each draw.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cvaezoo.distributions import DiagonalGaussian
from cvaezoo.models.bound import ConditionalVAE, repeat_samples

#: draws of z ~ p(z) per sample of x given y, resampled by p(y|z, ...): :meth:`JointVAE.sample`
RESAMPLING_DRAWS = 64


class JointVAE(ConditionalVAE):
    """Base class: p(z) = N(0, I), p(x|z,...) and p(y|z,...) from the model file; the bound on log p(x, y)."""

    zoo = False  # Li et al.'s factorisations beside the zoo's conditional VAEs
    extra_terms = ("label_nll",)
    generation_latent = "resampled"
    condition_kinds = ("class",)  # p(y|z, ...) is a categorical

    # ----- what a model file defines -------------------------------------------------------
    def label_logits(self, z: Tensor, x: Tensor) -> Tensor:
        """Logits of p(y | z, ...), (B, C), for z (B, D) and the image x it explains (B, ...)."""
        raise NotImplementedError

    def label_network(self, in_dim: int) -> nn.Module:
        """An MLP of the net's hidden sizes from ``in_dim`` features to the logits of p(y | ...)."""
        trunk, width = self.condition_mlp(in_dim)
        return nn.Sequential(trunk, nn.Linear(width, self.y_dim))

    # ----- the bound -----------------------------------------------------------------------
    def prior(self, x: Tensor | None, c: Tensor) -> DiagonalGaussian:
        return DiagonalGaussian.standard(c.new_zeros(c.shape[0], self.latent_dim))

    @property
    def label_log_prior(self) -> Tensor:
        """Nothing: the bound holds log p(y|z, ...) already."""
        return torch.zeros_like(self.log_class_prior)

    def label_log_probs(self, z: Tensor, x: Tensor, c: Tensor) -> Tensor:
        """log p(y | z, ...) per row, (N,), for z (N, D), the images x (N, ...) and one-hot labels c (N, C)."""
        return (F.log_softmax(self.label_logits(z, x), dim=-1) * c).sum(-1)

    def log_likelihood_terms(self, z: Tensor, x: Tensor | None, c: Tensor | None, target: Tensor) -> dict[str, Tensor]:
        """log p(x | z, ...) ("target") and log p(y | z, ...) ("label"), (S, B) each: their sum is what the bound,
        the IWAE bound and classifier mode score."""
        n, batch = z.shape[:2]
        label = self.label_log_probs(z.flatten(0, 1), repeat_samples(target, n), repeat_samples(c, n)).view(n, batch)
        return {**super().log_likelihood_terms(z, x, c, target), "label": label}

    # ----- generation ----------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, condition: Tensor, n: int = 1, temperature: float = 1.0, use_mean: bool = True) -> Tensor:
        """n draws of x for each label: z from p(z|y) ∝ p(z) p(y|z, ...) by importance resampling
        (:data:`RESAMPLING_DRAWS` draws of p(z) at ``temperature`` per sample, one kept with probability
        ∝ p(y|z, x_mean(z))), then x from p(x|z, ...) (its mean with ``use_mean``)."""
        c = self.encode_condition(condition)
        batch, draws = len(c), n * RESAMPLING_DRAWS
        candidates = self.prior(None, c).rsample(draws, temperature)  # (n*R, B, D)
        params = self.sampled_likelihood_params(candidates, None, c)  # (n*R*B, P, ...)
        log_w = self.label_log_probs(candidates.flatten(0, 1), self.likelihood.mean(params), repeat_samples(c, draws))
        log_w = log_w.view(n, RESAMPLING_DRAWS, batch)
        pick = torch.distributions.Categorical(logits=log_w.transpose(1, 2)).sample()  # (n, B): a draw per sample
        params = params.view(n, RESAMPLING_DRAWS, batch, *params.shape[1:])
        chosen = params[torch.arange(n)[:, None], pick, torch.arange(batch)[None]].flatten(0, 1)  # (n*B, P, ...)
        out = self.likelihood.mean(chosen) if use_mean else self.likelihood.sample(chosen)
        return out.view(n, batch, *out.shape[1:]).transpose(0, 1)
