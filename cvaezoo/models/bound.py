"""The bound shared by every model with a latent z, written once.

    ELBO(x, y) = E_q(z|x,y)[ log p(target | z, ...) ] - KL( q(z|x,y) || p(z | ...) )

A model file says only which networks it has and what each distribution is conditioned on:
``prior(x, c)``, ``likelihood_params(z, x, c)`` and ``target(x, y)``. This module owns the
posterior q(z|x,y), sampling, the closed-form KL, the importance-weighted bound, the class-conditional
bounds of classifier mode (Bayes rule) and KL warm-up; the training loop is :mod:`cvaezoo.models.training`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from cvaezoo.distributions import DiagonalGaussian
from cvaezoo.errors import UserError
from cvaezoo.models.conditional import ClassifierMode, ConditionalModel, check_positive
from cvaezoo.models.training import ElboTerms
from cvaezoo.nets import GaussianHead


def repeat_samples(t: Tensor | None, n: int) -> Tensor | None:
    """(B, ...) -> (n*B, ...), sample-major, to pair with z.flatten(0, 1) of shape (n, B, D)."""
    if t is None or n == 1:
        return t
    return t.unsqueeze(0).expand(n, *t.shape).reshape(n * t.shape[0], *t.shape[1:])


def every_class(x: Tensor, n_classes: int) -> tuple[Tensor, Tensor]:
    """x (B, ...) paired with every class, class-major: (x repeated, (C*B, ...); labels 0..C-1 each B times, (C*B,)).
    A bound on these rows viewed as (C, B) and transposed is (B, C), a column per class."""
    return repeat_samples(x, n_classes), torch.arange(n_classes, device=x.device).repeat_interleave(x.shape[0])


class ConditionalVAE(ConditionalModel):
    """Base class: maximises E_q(z|x,y)[log p(target|z,...)] - KL(q(z|x,y) || p(z|...))."""

    has_latent = True
    #: how :meth:`sample` draws z for a label: "prior", from the model's p(z|y) (or p(z)); "resampled", draws of p(z)
    #: resampled by the label's probability p(y|z, ...) (a model of the label, :class:`~cvaezoo.models.joint.JointVAE`)
    generation_latent: str = "prior"
    #: Bayes rule over the class bound: "elbo" with 10 posterior draws per class, the IWAE bound with 100, or
    #: "optimise" (analysis by synthesis, :meth:`optimised_log_joint`) from the best of 100 prior draws
    classifier_methods: dict[str, int] = {"elbo": 10, "iwae": 100, "optimise": 100}
    #: analysis by synthesis: Adam steps on z after the best prior draw, their learning rate, draws scored at once
    optimise_steps: int = 50
    optimise_lr: float = 0.05
    optimise_chunk: int = 25

    def __init__(self, x_shape: Sequence[int], latent_dim: int = 16, beta: float = 1.0, kl_warmup_steps: int = 0,
                 n_samples: int = 1, **kwargs):  # pragma: no mutate block (save_hyperparameters reads the arguments)
        check_positive(latent_dim=latent_dim, n_samples=n_samples)
        if beta < 0:
            raise UserError(f"model.beta must be >= 0, got {beta}")
        if kl_warmup_steps < 0:
            raise UserError(f"model.kl_warmup_steps must be >= 0, got {kl_warmup_steps}")
        super().__init__(x_shape, **kwargs)

    def build_graph(self) -> None:
        """q(z|x,y), the same inference network in every model, then the model file's networks."""
        self.latent_dim = int(self.hparams.latent_dim)
        self.posterior_net = GaussianHead(*self.encoder(self.x_shape, self.condition_dim), self.latent_dim)
        self.build_networks()

    # ----- what a model file defines -------------------------------------------------------
    def prior(self, x: Tensor | None, c: Tensor | None) -> DiagonalGaussian:
        """p(z | ...): the prior of the bound."""
        raise NotImplementedError

    def likelihood_params(self, z: Tensor, x: Tensor | None, c: Tensor | None) -> Tensor:
        """Parameters of p(target | z, ...)."""
        raise NotImplementedError

    def target(self, x: Tensor, y: Tensor) -> Tensor:
        """What the likelihood scores: x for generative models, y for predictive ones."""
        return x if self.target_name == "x" else y

    def generation_inputs(self, condition: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """(x, c) to feed prior and likelihood when generating the target from ``condition``."""
        return None, self.encode_condition(condition)

    # ----- the bound -----------------------------------------------------------------------
    def posterior(self, x: Tensor, c: Tensor) -> DiagonalGaussian:
        """q(z | x, y)."""
        return self.posterior_net(x, c)

    def sampled_likelihood_params(self, z: Tensor, x: Tensor | None, c: Tensor | None) -> Tensor:
        """Parameters of p(target | z, ...) for z of shape (S, B, D), sample-major: (S*B, ...)."""
        n = z.shape[0]
        return self.likelihood_params(z.flatten(0, 1), repeat_samples(x, n), repeat_samples(c, n))

    def log_likelihood_terms(self, z: Tensor, x: Tensor | None, c: Tensor | None, target: Tensor) -> dict[str, Tensor]:
        """The bound's log-likelihood for z of shape (S, B, D) as named terms, (S, B) each, that sum to it:
        {"target": log p(target | z, ...)}; a model whose likelihood has more factors names each (every term but
        the target's is logged as ``<name>_nll``, e.g. a model of the label's ``label_nll``)."""
        n, batch = z.shape[:2]
        params = self.sampled_likelihood_params(z, x, c)
        return {"target": self.likelihood.log_prob(params, repeat_samples(target, n)).view(n, batch)}

    def log_likelihood(self, z: Tensor, x: Tensor | None, c: Tensor | None, target: Tensor) -> Tensor:
        """The bound's log-likelihood, the sum of :meth:`log_likelihood_terms`, (S, B)."""
        return sum(self.log_likelihood_terms(z, x, c, target).values())

    def posterior_and_prior(self, x: Tensor, y: Tensor) -> tuple[Tensor, DiagonalGaussian, DiagonalGaussian]:
        """(c, q(z|x,y), p(z|...)) after checking the inputs."""
        self.check_x(x)
        c = self.encode_condition(y)
        return c, self.posterior(x, c), self.prior(x, c)

    def elbo_terms(self, x: Tensor, y: Tensor, samples: int | None = None, eps: Tensor | None = None) -> ElboTerms:
        """Monte-Carlo reconstruction term (``samples`` draws from q, default model.n_samples) and closed-form KL."""
        c, q, p = self.posterior_and_prior(x, y)
        z = q.rsample(samples or self.hparams.n_samples, eps=eps)
        terms = self.log_likelihood_terms(z, x, c, self.target(x, y))
        extras = {f"{name}_nll": -term.mean(0) for name, term in terms.items() if name != "target"}
        return ElboTerms(recon=-sum(terms.values()).mean(0), kl=q.kl(p), extras=extras)

    def iwae_bound(self, x: Tensor, y: Tensor, samples: int, eps: Tensor | None = None) -> Tensor:
        """Importance-weighted bound log 1/K sum_k p(target, z_k|...)/q(z_k|x,y) with K = ``samples``, per
        example (B,). K=1 is an unbiased single-sample estimate of the ELBO; the bound rises with K."""
        c, q, p = self.posterior_and_prior(x, y)
        z = q.rsample(samples, eps=eps)
        log_w = self.log_likelihood(z, x, c, self.target(x, y)) + p.log_prob(z) - q.log_prob(z)
        return torch.logsumexp(log_w, dim=0) - math.log(samples)

    def optimised_log_joint(self, x: Tensor, y: Tensor, draws: int, eps: Tensor | None = None) -> Tensor:
        """Analysis by synthesis (Schott et al., 2019), per example (B,): max_z log p(target, z | ...) found without
        the encoder: the best of ``draws`` prior draws of z (``eps``, (draws, B, D), fixes them), then
        :attr:`optimise_steps` Adam steps on z, each example's best iterate kept. A point estimate of log p(target | ...) up to the posterior's
        volume, not a bound. Differentiable in x as a maximum is (Danskin): through the objective at the
        optimum z*, which is held fixed."""
        self.check_x(x)
        c = self.encode_condition(y)
        prior, target = self.prior(x, c), self.target(x, y)
        if eps is None:
            eps = torch.randn(draws, *prior.mean.shape, device=x.device, dtype=x.dtype)

        def objective(z: Tensor, inputs: Tensor, condition: Tensor | None, of: Tensor, p: DiagonalGaussian) -> Tensor:
            return self.log_likelihood(z, inputs, condition, of) + p.log_prob(z)

        with torch.no_grad():
            fixed = (x.detach(), None if c is None else c.detach(), target.detach(),
                     DiagonalGaussian(prior.mean.detach(), prior.logvar.detach()))
            best, best_score = None, None
            for chunk in eps.split(self.optimise_chunk):
                z = fixed[3].rsample(len(chunk), eps=chunk)
                scores = objective(z, *fixed)
                top, index = scores.max(0)
                picked = z[index, torch.arange(z.shape[1], device=z.device)]
                if best is None:
                    best, best_score = picked, top
                else:
                    better = top > best_score
                    best, best_score = torch.where(better[:, None], picked, best), torch.maximum(top, best_score)
        if torch.is_inference_mode_enabled() and self.optimise_steps:
            raise UserError("method 'optimise' takes gradient steps on z: call it outside torch.inference_mode()")
        z = best.clone().requires_grad_(True)
        optimiser = torch.optim.Adam([z], lr=self.optimise_lr)
        with torch.enable_grad():
            for _ in range(self.optimise_steps):
                value = objective(z[None], *fixed)[0]
                better = value.detach() > best_score  # each example keeps its best iterate: Adam may overshoot
                best = torch.where(better[:, None], z.detach(), best)
                best_score = torch.where(better, value.detach(), best_score)
                (z.grad,) = torch.autograd.grad(-value.sum(), z)
                optimiser.step()
            with torch.no_grad():
                value = objective(z[None], *fixed)[0]
                best = torch.where((value > best_score)[:, None], z.detach(), best)
        return objective(best[None], x, c, target, prior)[0]

    def kl_weight(self) -> float:
        """beta, linearly warmed up from 0 over kl_warmup_steps optimiser steps."""
        beta, warmup = self.hparams.beta, self.hparams.kl_warmup_steps
        return beta if warmup == 0 else beta * min(1.0, self.global_step / warmup)

    # ----- classifier mode: Bayes rule over the class-conditional bound --------------------
    def class_bounds(self, x: Tensor, samples: int = 1, method: str = "elbo", kl_weight: float = 1.0) -> Tensor:
        """Bound on log p(x|y) for every class at once, (B, C) (on log p(x, y) for a model of the label too,
        :class:`~cvaezoo.models.joint.JointVAE`); the same noise serves every class.

        method "elbo": the ELBO with ``samples`` posterior draws, its KL scaled by ``kl_weight`` (1: the bound;
        M2's training uses its current KL weight); "iwae": the importance-weighted bound; "optimise": not a bound
        but :meth:`optimised_log_joint` from ``samples`` prior draws (the same draws for every class).
        Differentiable (M2 trains through it, the attacks follow its gradient).
        """
        if self.y_kind != "class" or self.target_name != "x":
            raise UserError(f"{type(self).__name__} has no class-conditional likelihood p(x|y) to invert")
        if method not in ("elbo", "iwae", "optimise"):
            raise UserError(f"method must be 'elbo', 'iwae' or 'optimise', got {method!r}")
        if method != "elbo" and kl_weight != 1.0:
            raise UserError(f"kl_weight={kl_weight} applies to the ELBO's KL term; method {method!r} has none")
        self.check_x(x)
        batch, n_classes = x.shape[0], self.y_dim
        xs, ys = every_class(x, n_classes)
        eps = torch.randn(samples, 1, batch, self.latent_dim, device=x.device, dtype=x.dtype)
        eps = eps.expand(samples, n_classes, batch, self.latent_dim).reshape(samples, n_classes * batch, self.latent_dim)
        if method == "elbo":
            terms = self.elbo_terms(xs, ys, samples=samples, eps=eps)
            bound = -(terms.recon + kl_weight * terms.kl)
        elif method == "iwae":
            bound = self.iwae_bound(xs, ys, samples, eps=eps)
        else:
            bound = self.optimised_log_joint(xs, ys, samples, eps=eps)
        return bound.view(n_classes, batch).T

    @property
    def label_log_prior(self) -> Tensor:
        """What :meth:`class_bounds` lacks of log p(x, y), per class, (C,): log p(y), the class prior (zeros for a
        model whose bound holds the label's probability already, :class:`~cvaezoo.models.joint.JointVAE`)."""
        return self.log_class_prior

    def class_log_joints(self, x: Tensor, samples: int = 1, method: str = "elbo") -> Tensor:
        """Bound on log p(x, y) for every class, (B, C): :meth:`class_bounds` plus :attr:`label_log_prior`. Their
        log-sum-exp over classes bounds log p(x)."""
        return self.class_bounds(x, samples, method) + self.label_log_prior

    def predictive_log_probs(self, x: Tensor, mode: ClassifierMode) -> Tensor:
        """Bayes rule, log_softmax_y[ log p(x, y) ] (:meth:`class_log_joints`), with the bound taken by
        ``mode.method`` ("elbo" or "iwae") from ``mode.samples`` posterior draws."""
        return torch.log_softmax(self.class_log_joints(x, mode.samples, mode.method), dim=-1)

    # ----- generation ----------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, condition: Tensor, n: int = 1, temperature: float = 1.0, use_mean: bool = True) -> Tensor:
        """n draws of the target for each condition: (len(condition), n, *target_shape).

        Generative models: condition is y, z ~ p(z|y) (or N(0, I)), x from p(x|z,...).
        With use_mean the likelihood's mean is returned instead of a sample from it.
        """
        x, c = self.generation_inputs(condition)
        z = self.prior(x, c).rsample(n, temperature)
        params = self.sampled_likelihood_params(z, x, c)
        out = self.likelihood.mean(params) if use_mean else self.likelihood.sample(params)
        return out.view(n, z.shape[1], *out.shape[1:]).transpose(0, 1)

    @torch.no_grad()
    def decode(self, z: Tensor, c: Tensor | None) -> Tensor:
        """Mean of p(x | z, ...) for generative models (those whose target is x)."""
        return self.likelihood.mean(self.likelihood_params(z, None, c))
