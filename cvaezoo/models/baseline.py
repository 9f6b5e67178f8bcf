"""The deterministic baseline of CVAE-3's task: Sohn et al. (2015)'s "NN", y_hat = f(x).

No latent variable: it maximises the exact conditional log-likelihood
    log p(y|x) = log p(y | f(x))     (Bernoulli pixels, or a categorical over classes)
which is logged as ``recon`` (its negative) with ``kl`` = 0, so its metrics line up with
CVAE-3's. Its feature trunk has the architecture of CVAE-3's prior network p(z|x), which can
start from it (``model.init_prior_from``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from cvaezoo.errors import UserError
from cvaezoo.models.conditional import ClassifierMode, ConditionalModel
from cvaezoo.models.training import ElboTerms

#: what baseline checkpoints written before the model base class was split record (the base class then took
#: these for every model); loading one drops them, and any other value is refused
OLD_LATENT_DEFAULTS = {"beta": 1.0, "kl_warmup_steps": 0, "n_samples": 1}


class Baseline(ConditionalModel):
    """y_hat = f(x) trained by maximum likelihood; one prediction per x (no modes)."""

    display_name = "NN (discriminative)"

    zoo = False  # a yardstick, not one of the zoo's conditional VAEs
    target_name = "y"
    classifier_methods = {"exact": 0}  # one deterministic prediction

    def __init__(self, *args, latent_dim: int | None = None, **kwargs):  # pragma: no mutate block (save_hyperparameters)
        """``latent_dim`` is accepted and unused (there is no z here): an experiment sets it for the latent model the
        baseline is compared with, and one config serves both (``experiment=quadrants``: 32 for CVAE-3 and its
        baseline alike)."""
        for key, recorded in OLD_LATENT_DEFAULTS.items():
            if kwargs.get(key, recorded) != recorded:
                raise UserError(f"model.{key} does not apply: the baseline has no latent z")
            kwargs.pop(key, None)
        super().__init__(*args, **kwargs)

    def build_networks(self) -> None:
        self.predictor_trunk, features = self.encoder(self.x_shape, 0)
        self.predictor_head = self.decoder(features, (self.y_dim,))

    def output_params(self, x: Tensor) -> Tensor:
        """Parameters of p(y|x): logits for Bernoulli pixels or classes."""
        self.check_x(x)
        return self.predictor_head(self.predictor_trunk(x))

    def elbo_terms(self, x: Tensor, y: Tensor) -> ElboTerms:
        """The exact -log p(y|x) as ``recon``; there is no KL."""
        log_lik = self.likelihood.log_prob(self.output_params(x), y if self.y_kind == "class" else self.encode_condition(y))
        return ElboTerms(recon=-log_lik, kl=torch.zeros_like(log_lik))

    @torch.no_grad()
    def sample(self, condition: Tensor, n: int = 1, temperature: float = 1.0, use_mean: bool = True) -> Tensor:
        """n outputs per input x, (B, n, y_dim): the mean of p(y|x) repeated, or draws from it (``temperature``
        scales a prior's spread; there is none here)."""
        params = self.output_params(condition)
        params = params.unsqueeze(1).expand(-1, n, *params.shape[1:]).flatten(0, 1)
        out = self.likelihood.mean(params) if use_mean else self.likelihood.sample(params)
        return out.view(len(condition), n, *out.shape[1:])

    def predictive_log_probs(self, x: Tensor, mode: ClassifierMode) -> Tensor:
        """log p(y|x) for class labels (its one method, "exact")."""
        return torch.log_softmax(self.output_params(x), dim=-1)
