"""CVAE-3: Sohn et al. (2015), a predictive model of y given x.

Graph: q(z|x,y), p(z|x), p(y|x,z). Bound:
    log p(y|x) >= E_q(z|x,y)[log p(y|x,z)] - KL(q(z|x,y) || p(z|x))
y is a class label (categorical likelihood) or a structured output such as the missing pixels of
an image (Bernoulli likelihood). With hybrid_alpha < 1 the loss is Sohn et al.'s hybrid
    alpha * (-bound) + (1 - alpha) * L_GSNN,   L_GSNN = -E_p(z|x)[log p(y|x,z)],
and hybrid_alpha = 0 is the GSNN, which trains the prior network alone as the sampler.
With init_prior_from, the prior network's trunk starts from a trained baseline NN
(:mod:`cvaezoo.models.baseline`, same architecture), as Sohn et al. initialise from their baseline.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from cvaezoo.checkpoint_files import resolve_checkpoint
from cvaezoo.distributions import DiagonalGaussian
from cvaezoo.errors import UserError
from cvaezoo.models.baseline import Baseline
from cvaezoo.models.bound import ConditionalVAE, every_class
from cvaezoo.models.conditional import ClassifierMode
from cvaezoo.models.training import ElboTerms
from cvaezoo.nets import GaussianHead


class CVAE3(ConditionalVAE):
    """Conditional prior p(z|x); the likelihood is over y."""

    display_name = "CVAE-3"

    target_name = "y"
    # p(y|x) = E_p(z|x)[p(y|x,z)]: "mc" averages draws of z, "mean" takes the mean of p(z|x); "iwae": softmax over
    # classes of the importance-weighted bound on log p(y|x) (Li et al. 2019's classifier, K = 10)
    classifier_methods = {"mc": 100, "mean": 0, "iwae": 10}
    extra_terms = ("gsnn_nll",)  # -E_p(z|x)[log p(y|x,z)], for the GSNN and the hybrid

    def __init__(self, *args, hybrid_alpha: float = 1.0, init_prior_from: str | None = None, **kwargs):  # pragma: no mutate block (as the base class: save_hyperparameters)
        super().__init__(*args, **kwargs)
        if not 0.0 <= hybrid_alpha <= 1.0:
            raise UserError(f"model.hybrid_alpha must lie in [0, 1], got {hybrid_alpha}")

    def on_fit_start(self) -> None:
        """A fresh fit (not a resumed one) copies the baseline's trunk into the prior network."""
        if self.hparams.init_prior_from and self.global_step == 0:
            self.init_prior_from_baseline(self.hparams.init_prior_from)

    def init_prior_from_baseline(self, path: str) -> None:
        """Load the feature trunk of p(z|x) from a baseline NN checkpoint (a .ckpt or a run directory)."""
        baseline = Baseline.load_from_checkpoint(resolve_checkpoint(path), map_location="cpu")  # refuses other models
        try:
            self.prior_net.features.load_state_dict(baseline.predictor_trunk.state_dict())
        except RuntimeError as exc:
            raise UserError(
                f"model.init_prior_from={path}: the baseline's network (x of shape {baseline.x_shape}, net "
                f"{baseline.net_config}) does not fit this prior network (x {self.x_shape}, net {self.net_config})"
            ) from exc

    def checkpoint_metric(self) -> tuple[str, str]:
        """The GSNN (hybrid_alpha = 0) does not train q(z|x,y), so its val/elbo means nothing: use its loss."""
        return ("val/loss", "min") if self.hparams.hybrid_alpha == 0 else super().checkpoint_metric()

    def build_networks(self) -> None:
        self.prior_net = GaussianHead(*self.encoder(self.x_shape, 0), self.latent_dim)
        self.predictor_trunk, features = self.encoder(self.x_shape, self.latent_dim)
        self.predictor_head = self.decoder(features, self.target_shape())

    def target_shape(self) -> tuple[int, ...]:
        return (self.y_dim,)

    def prior(self, x: Tensor, c: Tensor | None) -> DiagonalGaussian:
        return self.prior_net(x)

    def likelihood_params(self, z: Tensor, x: Tensor, c: Tensor | None) -> Tensor:
        return self.predictor_head(self.predictor_trunk(x, z))

    def generation_inputs(self, condition: Tensor) -> tuple[Tensor, None]:
        """CVAE-3 generates y: the condition is an input x."""
        self.check_x(condition)
        return condition, None

    def prior_log_likelihoods(self, x: Tensor, y: Tensor, samples: int) -> Tensor:
        """log p(y|x,z_s) for ``samples`` draws z_s ~ p(z|x), shape (samples, B)."""
        return self.log_likelihood(self.prior(x, None).rsample(samples), x, None, y)

    def gsnn_nll(self, x: Tensor, y: Tensor, samples: int | None = None) -> Tensor:
        """-E_p(z|x)[log p(y|x,z)], Monte Carlo with z drawn from the prior, per example."""
        return -self.prior_log_likelihoods(x, y, samples or self.hparams.n_samples).mean(0)

    def training_loss(self, x: Tensor, y: Tensor, terms: ElboTerms, kl_weight: float) -> Tensor:
        alpha = self.hparams.hybrid_alpha
        loss = terms.recon + kl_weight * terms.kl
        if alpha == 1.0:
            return loss
        gsnn_nll = self.gsnn_nll(x, y)
        terms.extras["gsnn_nll"] = gsnn_nll  # logged as {stage}/gsnn_nll beside the CVAE terms
        return alpha * loss + (1.0 - alpha) * gsnn_nll

    @torch.no_grad()
    def conditional_log_likelihood(self, x: Tensor, y: Tensor, samples: int = 100, proposal: str | None = None) -> Tensor:
        """Importance-sampled estimate of log p(y|x) per example, from ``samples`` draws.

        proposal "posterior": z ~ q(z|x,y) (the IWAE bound; for CVAE and hybrid models);
        proposal "prior": z ~ p(z|x), i.e. log mean_s p(y|x,z_s) (for the GSNN, whose q is untrained);
        None picks "prior" for the GSNN (hybrid_alpha = 0) and "posterior" otherwise.
        """
        if proposal is None:
            proposal = "prior" if self.hparams.hybrid_alpha == 0 else "posterior"
        if proposal == "posterior":
            return self.iwae_bound(x, y, samples)
        if proposal != "prior":
            raise UserError(f"proposal must be 'posterior' or 'prior', got {proposal!r}")
        self.check_x(x)
        return torch.logsumexp(self.prior_log_likelihoods(x, y, samples), dim=0) - math.log(samples)

    def predictive_log_probs(self, x: Tensor, mode: ClassifierMode) -> Tensor:
        """log p(y|x) = log E_p(z|x)[p(y|x,z)]: method "mean" takes z at the prior mean, "mc" the log of the mean
        probability over ``mode.samples`` draws of z; "iwae" normalises over classes the importance-weighted bound
        on log p(y|x) from ``mode.samples`` draws of q(z|x,y) per class."""
        self.check_x(x)
        if mode.method == "iwae":
            bounds = self.iwae_bound(*every_class(x, self.y_dim), mode.samples)
            return torch.log_softmax(bounds.view(self.y_dim, len(x)).T, dim=-1)
        prior = self.prior(x, None)
        z = prior.mean[None] if mode.method == "mean" else prior.rsample(mode.samples)
        log_probs = torch.log_softmax(self.sampled_likelihood_params(z, x, None), dim=-1).view(z.shape[0], x.shape[0], -1)
        return torch.logsumexp(log_probs, dim=0) - math.log(z.shape[0])
