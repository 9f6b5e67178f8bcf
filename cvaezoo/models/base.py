"""The bound shared by every model, written once.

    ELBO(x, y) = E_q(z|x,y)[ log p(target | z, ...) ] - KL( q(z|x,y) || p(z | ...) )

A model file says only which networks it has and what each distribution is conditioned on:
``prior(x, c)``, ``likelihood_params(z, x, c)`` and ``target(x, y)``. This module owns the
posterior q(z|x,y), sampling, the closed-form KL, the importance-weighted bound, KL warm-up,
logging of every term and the optimiser.

Metric scheme, for stage in {train, val, test}, epoch means per example, in nats
(``train_step/<term>`` holds the per-batch training values):
    {stage}/recon      -E_q[log p(target|z,...)], a positive negative log-likelihood
    {stage}/kl         KL(q || p) >= 0
    {stage}/elbo       -(recon + kl), the evidence lower bound itself
    {stage}/kl_weight  the KL weight (beta times warm-up) used for the loss
    {stage}/loss       recon + kl_weight * kl, what the optimiser minimises
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric

from cvaezoo.distributions import DiagonalGaussian, Likelihood, build_likelihood, pixel_likelihood
from cvaezoo.errors import UserError
from cvaezoo.nets import Decoder, Encoder, GaussianHead, NetConfig, mlp

CONDITION_KINDS = ("class", "multihot", "vector")  # multi-hot and vector conditions pass through alike
STAGES = ("train", "val", "test")
TERMS = ("elbo", "recon", "kl", "kl_weight", "loss")
NONFINITE_POLICIES = ("raise", "skip")


@dataclass
class ElboTerms:
    """Per-example terms of the bound, each of shape (B,)."""

    recon: Tensor  # -E_q[log p(target | z, ...)]
    kl: Tensor  # KL(q(z|x,y) || p(z|...))
    #: per-example values of a model's own terms (its ``extra_terms``), logged beside the bound's
    extras: dict[str, Tensor] = field(default_factory=dict)

    @property
    def elbo(self) -> Tensor:
        return -(self.recon + self.kl)


def repeat_samples(t: Tensor | None, n: int) -> Tensor | None:
    """(B, ...) -> (n*B, ...), sample-major, to pair with z.flatten(0, 1) of shape (n, B, D)."""
    if t is None or n == 1:
        return t
    return t.unsqueeze(0).expand(n, *t.shape).reshape(n * t.shape[0], *t.shape[1:])


class ConditionalVAE(L.LightningModule):
    """Base class: maximises E_q(z|x,y)[log p(target|z,...)] - KL(q(z|x,y) || p(z|...))."""

    # What tools need to know about a model is declared here, as class data; no tool tests a model's name.
    #: what the likelihood is over, i.e. what the model generates: "x" (images, given a condition) or "y" (given x)
    target_name: str = "x"
    #: whether p(x|z, ...) sees the condition, so that one z decodes with other labels (analogy and editing grids)
    decoder_sees_condition: bool = True
    #: whether classifier mode (predict_proba) is defined (for class labels)
    classifies: bool = True
    #: classifier-mode methods of predict_proba, each with its default number of samples; the first is the default
    classifier_methods: dict[str, int] = {"elbo": 10, "iwae": 100}
    #: False for the deterministic baseline, which has no z and so no q(z|x,y)
    has_latent: bool = True
    #: names of per-example terms a model adds to ``ElboTerms.extras``; logged as {stage}/<name> like the bound's
    extra_terms: tuple[str, ...] = ()

    def __init__(
        self,
        x_shape: Sequence[int],
        y_kind: str = "class",
        y_dim: int = 10,
        net: dict | None = None,
        latent_dim: int = 16,
        likelihood: str | None = None,
        likelihood_kwargs: dict | None = None,
        beta: float = 1.0,
        kl_warmup_steps: int = 0,
        n_samples: int = 1,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        class_prior: Sequence[float] | None = None,
        on_nonfinite: str = "raise",
        compile: bool = False,
        pixel_levels: int | None = None,
        allow_grey_bernoulli: bool = False,
        attribute_groups: Sequence[int] | None = None,
        class_names: Sequence[str] | None = None,
    ):  # pragma: no mutate block (mutmut's wrapper would hide the arguments save_hyperparameters reads)
        super().__init__()
        self.save_hyperparameters()
        _check_positive(latent_dim=latent_dim, y_dim=y_dim, n_samples=n_samples, lr=lr)
        if beta < 0:
            raise UserError(f"model.beta must be >= 0, got {beta}")
        if kl_warmup_steps < 0:
            raise UserError(f"model.kl_warmup_steps must be >= 0, got {kl_warmup_steps}")
        if on_nonfinite not in NONFINITE_POLICIES:
            raise UserError(f"model.on_nonfinite must be one of {list(NONFINITE_POLICIES)}, got {on_nonfinite!r}")
        if y_kind not in CONDITION_KINDS:
            raise UserError(f"y_kind must be one of {list(CONDITION_KINDS)}, got {y_kind!r}")
        self.x_shape = tuple(int(s) for s in x_shape)
        if len(self.x_shape) == 0 or any(s <= 0 for s in self.x_shape):
            raise UserError(f"x_shape must be a non-empty list of positive sizes, got {list(x_shape)}")
        self.y_kind, self.y_dim, self.latent_dim = y_kind, int(y_dim), int(latent_dim)
        self.net_config = NetConfig.from_dict(net)
        self.pixel_levels = pixel_levels  # distinct values of the data's pixels (from the data module); None: unknown
        self.attribute_groups = list(attribute_groups) if attribute_groups else None  # multi-hot y: its group sizes
        self.class_names = list(class_names) if class_names else None  # names of the classes or attributes, if known
        self.likelihood_name = likelihood or self.default_likelihood(y_kind, pixel_levels)
        self._check_likelihood()
        self.likelihood: Likelihood = build_likelihood(self.likelihood_name, **(likelihood_kwargs or {}))

        prior = torch.full((self.y_dim,), 1.0 / self.y_dim) if class_prior is None else torch.as_tensor(class_prior)
        if y_kind == "class" and prior.shape != (self.y_dim,):
            raise UserError(f"class_prior must have {self.y_dim} entries, got shape {tuple(prior.shape)}")
        self.register_buffer("log_class_prior", torch.log(prior.float()))

        if self.has_latent:  # q(z|x,y): the same inference network in every model.
            self.posterior_net = GaussianHead(*self.encoder(self.x_shape, self.condition_dim), self.latent_dim)
        self.build_networks()
        # nan_strategy="disable": no NaN scan per update (the loss is checked once per step instead)
        self.metrics = nn.ModuleDict(
            {f"{s}_{t}": MeanMetric(nan_strategy="disable") for s in STAGES for t in (*TERMS, *self.extra_terms)}
        )
        self.skipped_batches = 0  # training batches skipped for a non-finite loss or gradient
        self._skip_update = False  # set by a non-finite training loss: optimizer_step drops this step's update

    # ----- what a model file defines -------------------------------------------------------
    def build_networks(self) -> None:
        """Create the prior and likelihood networks (called once from __init__)."""
        raise NotImplementedError

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

    @classmethod
    def default_likelihood(cls, y_kind: str, pixel_levels: int | None = None) -> str:
        """p(target | ...) when ``model.likelihood`` is null: a categorical over class labels, a Bernoulli over
        binary attributes; for pixels, Bernoulli when binary, discretised logistic for 8-bit grey levels,
        continuous Bernoulli otherwise."""
        if cls.target_name == "y" and y_kind != "vector":
            return "categorical" if y_kind == "class" else "bernoulli"
        return pixel_likelihood(pixel_levels)

    @property
    def target_is_pixels(self) -> bool:
        return self.target_name == "x" or self.y_kind == "vector"

    def _check_likelihood(self) -> None:
        name = self.likelihood_name
        grey = self.pixel_levels not in (None, 2)
        if name == "bernoulli" and self.target_is_pixels and grey and not self.hparams.allow_grey_bernoulli:
            raise UserError(
                f"model.likelihood=bernoulli is a distribution over binary pixels, but this data has {self.pixel_levels} "
                f"grey levels, so its bound would bound nothing: use model.likelihood=null (here "
                f"{pixel_likelihood(self.pixel_levels)}), continuous_bernoulli or gaussian, or binarize the data "
                "(data.binarize=dynamic or threshold); model.allow_grey_bernoulli=true keeps the unnormalised BCE"
            )
        if self.target_name == "y" and (self.y_kind == "class") != (name == "categorical"):
            needed = "categorical" if self.y_kind == "class" else "bernoulli or gaussian"
            raise UserError(f"{self.model_name} with y_kind={self.y_kind!r} needs model.likelihood={needed}, got {name!r}")
        if self.target_name == "x" and name == "categorical":
            raise UserError(f"{self.model_name} models images x: model.likelihood=categorical is for class labels")

    # ----- building blocks for model files -------------------------------------------------
    def encoder(self, x_shape: Sequence[int], cond_dim: int) -> tuple[Encoder, int]:
        enc = Encoder(x_shape, cond_dim, self.net_config)
        return enc, enc.out_dim

    def decoder(self, in_dim: int, out_shape: Sequence[int]) -> Decoder:
        return Decoder(in_dim, out_shape, self.likelihood.params_per_dim, self.net_config)

    def condition_mlp(self, in_dim: int) -> tuple[nn.Module, int]:
        return mlp(in_dim, self.net_config.hidden, self.net_config.activation), int(self.net_config.hidden[-1])

    # ----- conditions ----------------------------------------------------------------------
    @property
    def condition_dim(self) -> int:
        """Width of the encoded condition c that the networks receive."""
        return self.y_dim

    def encode_condition(self, y: Tensor) -> Tensor:
        """Class indices -> one-hot; multi-hot attribute vectors (or other vectors) pass through as floats."""
        if self.y_kind == "class":
            if y.dim() != 1:
                raise UserError(f"class labels must have shape (B,), got {tuple(y.shape)}")
            if not self.training and len(y) and (int(y.min()) < 0 or int(y.max()) >= self.y_dim):
                bad = y[(y < 0) | (y >= self.y_dim)][:5].tolist()
                raise UserError(f"class labels must lie in [0, {self.y_dim}), got {bad}")
            return F.one_hot(y.long(), self.y_dim).to(self.dtype)
        if y.dim() != 2 or y.shape[1] != self.y_dim:
            raise UserError(f"attribute vectors must have shape (B, {self.y_dim}), got {tuple(y.shape)}")
        return y.to(self.dtype)

    def check_x(self, x: Tensor) -> None:
        """Shape always; finiteness outside training (the data modules check their data once, up front)."""
        if tuple(x.shape[1:]) != self.x_shape:
            raise UserError(f"x must have shape (B, {', '.join(map(str, self.x_shape))}), got {tuple(x.shape)}")
        if not self.training and not bool(torch.isfinite(x).all()):
            raise UserError(f"x contains {int((~torch.isfinite(x)).sum())} non-finite values")

    # ----- the bound -----------------------------------------------------------------------
    def posterior(self, x: Tensor, c: Tensor) -> DiagonalGaussian:
        """q(z | x, y)."""
        return self.posterior_net(x, c)

    def sampled_likelihood_params(self, z: Tensor, x: Tensor | None, c: Tensor | None) -> Tensor:
        """Parameters of p(target | z, ...) for z of shape (S, B, D), sample-major: (S*B, ...)."""
        n = z.shape[0]
        return self.likelihood_params(z.flatten(0, 1), repeat_samples(x, n), repeat_samples(c, n))

    def log_likelihood(self, z: Tensor, x: Tensor | None, c: Tensor | None, target: Tensor) -> Tensor:
        """log p(target | z, ...) for z of shape (S, B, D); returns (S, B)."""
        n, batch = z.shape[:2]
        return self.likelihood.log_prob(self.sampled_likelihood_params(z, x, c), repeat_samples(target, n)).view(n, batch)

    def _posterior_and_prior(self, x: Tensor, y: Tensor) -> tuple[Tensor, DiagonalGaussian, DiagonalGaussian]:
        """(c, q(z|x,y), p(z|...)) after checking the inputs."""
        self.check_x(x)
        c = self.encode_condition(y)
        return c, self.posterior(x, c), self.prior(x, c)

    def elbo_terms(self, x: Tensor, y: Tensor, n_samples: int | None = None, eps: Tensor | None = None) -> ElboTerms:
        """Monte-Carlo reconstruction term (n_samples draws from q) and closed-form KL."""
        c, q, p = self._posterior_and_prior(x, y)
        z = q.rsample(n_samples or self.hparams.n_samples, eps=eps)
        log_lik = self.log_likelihood(z, x, c, self.target(x, y))
        return ElboTerms(recon=-log_lik.mean(0), kl=q.kl(p))

    def iwae_bound(self, x: Tensor, y: Tensor, k: int, eps: Tensor | None = None) -> Tensor:
        """Importance-weighted bound log 1/K sum_k p(target, z_k|...)/q(z_k|x,y), per example (B,).

        K=1 is an unbiased single-sample estimate of the ELBO; the bound rises with K.
        """
        c, q, p = self._posterior_and_prior(x, y)
        z = q.rsample(k, eps=eps)
        log_w = self.log_likelihood(z, x, c, self.target(x, y)) + p.log_prob(z) - q.log_prob(z)
        return torch.logsumexp(log_w, dim=0) - math.log(k)

    # ----- classifier mode -------------------------------------------------------------------
    def class_bounds(self, x: Tensor, k: int = 1, method: str = "elbo", kl_weight: float = 1.0) -> Tensor:
        """Bound on log p(x|y) for every class at once, (B, C); the same noise serves every class.

        method "elbo": the ELBO with k posterior samples, its KL scaled by ``kl_weight`` (1: the bound;
        M2's training uses its current KL weight); "iwae": the importance-weighted bound.
        Differentiable (M2 trains through it, the attacks follow its gradient).
        """
        if self.y_kind != "class" or self.target_name != "x":
            raise UserError(f"{type(self).__name__} has no class-conditional likelihood p(x|y) to invert")
        if method not in ("elbo", "iwae"):
            raise UserError(f"method must be 'elbo' or 'iwae', got {method!r}")
        self.check_x(x)
        batch, n_classes = x.shape[0], self.y_dim
        xs = repeat_samples(x, n_classes)  # class-major: (C*B, ...)
        ys = torch.arange(n_classes, device=x.device).repeat_interleave(batch)
        eps = torch.randn(k, 1, batch, self.latent_dim, device=x.device, dtype=x.dtype)
        eps = eps.expand(k, n_classes, batch, self.latent_dim).reshape(k, n_classes * batch, self.latent_dim)
        if method == "elbo":
            terms = self.elbo_terms(xs, ys, n_samples=k, eps=eps)
            bound = -(terms.recon + kl_weight * terms.kl)
        else:
            bound = self.iwae_bound(xs, ys, k, eps=eps)
        return bound.view(n_classes, batch).T

    def log_predictive(self, x: Tensor, k: int = 1, method: str = "elbo") -> Tensor:
        """log p(y|x) for every class, (B, C), differentiable in x (the attacks use it): Bayes rule,
        log_softmax_y[ log p(x|y) + log p(y) ], with log p(x|y) bounded by ``method``."""
        return torch.log_softmax(self.class_bounds(x, k, method) + self.log_class_prior, dim=-1)

    @torch.no_grad()
    def predict_proba(self, x: Tensor, **kwargs) -> Tensor:
        """p(y|x), (B, C): classifier mode (kwargs: the model's ``classifier_methods`` options, k and method)."""
        return self.log_predictive(x, **kwargs).exp()

    @torch.no_grad()
    def classify(self, x: Tensor, **kwargs) -> Tensor:
        """The most probable class for each x, (B,)."""
        return self.predict_proba(x, **kwargs).argmax(dim=-1)

    def bits_per_dim(self, log_likelihood: Tensor | float) -> Tensor | float:
        """A (bound on the) log-likelihood of the target in nats, as -log2 p per dimension."""
        dims = math.prod(self.x_shape) if self.target_name == "x" else self.y_dim
        return -log_likelihood / (dims * math.log(2.0))

    def checkpoint_metric(self) -> tuple[str, str]:
        """(metric, "max" or "min") that selects the best checkpoint when the config leaves it to the model."""
        return "val/elbo", "max"

    def kl_weight(self) -> float:
        """beta, linearly warmed up from 0 over kl_warmup_steps optimiser steps."""
        beta, warmup = self.hparams.beta, self.hparams.kl_warmup_steps
        return beta if warmup == 0 else beta * min(1.0, self.global_step / warmup)

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

    # ----- Lightning -----------------------------------------------------------------------
    def _shared_step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        x, y = batch
        terms = self.elbo_terms(x, y)
        kl_weight = self.kl_weight()
        loss = self.training_loss(x, y, terms, kl_weight)
        if stage == "train" and not self.all_finite(loss):
            bad = [name for name in ("recon", "kl") if not bool(torch.isfinite(getattr(terms, name)).all())]
            here = bad or not bool(torch.isfinite(loss).all())  # else the loss was non-finite on another process
            self.skip_update(f"{' and '.join(bad) or 'loss'} term" if here else "loss on another process")
            return loss.mean()  # not logged; its (non-finite) gradient is dropped by optimizer_step
        self.log_terms(stage, terms, loss, kl_weight)
        return loss.mean()

    def training_loss(self, x: Tensor, y: Tensor, terms: ElboTerms, kl_weight: float) -> Tensor:
        """What is minimised, per example: recon + kl_weight * KL (models may add terms)."""
        return terms.recon + kl_weight * terms.kl

    def log_terms(self, stage: str, terms: ElboTerms, loss: Tensor, kl_weight: float) -> None:
        """Accumulate every term of the bound; epoch means are logged by :meth:`log_epoch_terms`.

        Per step this only updates torchmetrics accumulators (no host sync, no ``self.log``);
        ``train_step/<term>`` batch means are logged every ``log_every_n_steps`` steps.
        """
        values = {"elbo": terms.elbo, "recon": terms.recon, "kl": terms.kl, "loss": loss}
        for name, value in {**values, **terms.extras}.items():
            self.metrics[f"{stage}_{name}"].update(value.detach())
        # one value per example (torchmetrics ignores ``weight`` under nan_strategy="disable")
        self.metrics[f"{stage}_kl_weight"].update(torch.full_like(loss.detach(), float(kl_weight)))
        # Lightning writes step metrics when (step + 1) is a multiple of log_every_n_steps: log only then
        if stage == "train" and self._trainer is not None and (self.global_step + 1) % self.trainer.log_every_n_steps == 0:
            step_values = {f"train_step/{name}": value.detach().mean() for name, value in values.items()}
            self.log_dict({**step_values, "train_step/kl_weight": float(kl_weight)}, on_step=True, on_epoch=False)

    def log_epoch_terms(self, stage: str) -> None:
        """Log the epoch mean of each term, over every example on every process (torchmetrics syncs)."""
        for name in (*TERMS, *self.extra_terms):
            metric = self.metrics[f"{stage}_{name}"]
            if metric.update_count == 0:
                continue
            value = metric.compute()
            self.log(f"{stage}/{name}", value, prog_bar=name == "elbo", sync_dist=True)
            if name == "elbo" and self.likelihood.reports_bits_per_dim:
                self.log(f"{stage}/bpd", self.bits_per_dim(value), sync_dist=True)
            with torch.inference_mode(False):  # fresh states must stay usable by a later fit's no-grad validation
                metric.reset()

    def on_train_epoch_end(self) -> None:
        self.log_epoch_terms("train")
        if self.skipped_batches:
            self.log("train/skipped_batches", float(self.skipped_batches))

    def on_validation_epoch_end(self) -> None:
        self.log_epoch_terms("val")

    def on_test_epoch_end(self) -> None:
        self.log_epoch_terms("test")

    def all_finite(self, value: Tensor) -> bool:
        """Whether ``value`` is finite here and on every other process: under DDP all processes must skip
        (or stop at) the same step, or the others would wait forever in the gradient all-reduce."""
        finite = bool(torch.isfinite(value).all())
        if self._trainer is not None and self.trainer.world_size > 1:
            finite = self.trainer.strategy.reduce_boolean_decision(finite, all=True)
        return finite

    def on_train_start(self) -> None:
        """Under DDP, each process draws its own random numbers (binarisation, posterior noise): its torch
        generator is reseeded with a number drawn from the common seeded stream plus its rank, so runs stay
        reproducible. (Weights are initialised before this, identically on every process.)"""
        if self.trainer.world_size > 1:
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,))) + self.trainer.global_rank)

    def skip_update(self, what: str) -> None:
        """A non-finite training loss: stop (model.on_nonfinite=raise) or have optimizer_step drop this update."""
        self._nonfinite(what)
        self._skip_update = True

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer, optimizer_closure=None) -> None:
        """Run the step's closure (forward, backward and, under DDP, the gradient all-reduce, on every process
        alike), then update the weights unless the loss was non-finite on some process (:meth:`skip_update`)."""
        loss = optimizer_closure()
        if self._skip_update:
            self._skip_update = False
            optimizer.zero_grad()
            return
        optimizer.step(closure=lambda: loss)

    def _nonfinite(self, what: str) -> None:
        """Count and report a skipped step (model.on_nonfinite=skip), or stop before any non-finite value
        reaches the weights."""
        where = f"step {self.global_step} (epoch {self.current_epoch})"
        if self.hparams.on_nonfinite == "skip":
            self.skipped_batches += 1
            self.print(f"cvaezoo: skipped a batch with a non-finite {what} at {where} ({self.skipped_batches} so far)")
            return
        raise FloatingPointError(
            f"non-finite {what} at {where}; training stopped before updating the weights, so the checkpoints on disk "
            "are the last good ones. Try a lower model.lr, model.kl_warmup_steps>0, or model.on_nonfinite=skip."
        )

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if grads and not bool(torch.isfinite(torch.stack(torch._foreach_norm(grads))).all()):
            self._nonfinite("gradient")
            for p in self.parameters():  # skip: parameters without a gradient are not updated
                p.grad = None

    def training_step(self, batch: tuple[Tensor, Tensor] | dict, batch_idx: int) -> Tensor:
        if isinstance(batch, dict):  # semi-supervised data (data.labels_per_class): these models use the labels only
            batch = batch["labelled"]
        return self._shared_step(batch, "train")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._shared_step(batch, "test")

    @property
    def model_name(self) -> str:
        """The config name of this model (``cvae1`` ... ``cvae4``)."""
        return type(self).__name__.lower()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["cvaezoo_model"] = self.model_name

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Refuse a checkpoint of another model, or of the same model sized differently."""
        stored = checkpoint.get("cvaezoo_model")
        if stored is None:
            raise UserError("not a cvaezoo checkpoint: it has no 'cvaezoo_model' entry")
        if stored != self.model_name:
            raise UserError(f"checkpoint holds a {stored} model, but a {self.model_name} model was configured")
        own, stored_state = self.state_dict(), checkpoint.get("state_dict", {})
        missing, unexpected = sorted(set(own) - set(stored_state)), sorted(set(stored_state) - set(own))
        if missing or unexpected:
            raise UserError(
                f"checkpoint does not fit this {self.model_name}: missing {missing[:3]}, unexpected {unexpected[:3]} "
                "(trained with another net kind?)"
            )
        for key, tensor in stored_state.items():
            if tensor.shape != own[key].shape:
                raise UserError(
                    f"checkpoint does not fit this {self.model_name}: {key} has shape {tuple(tensor.shape)} in the "
                    f"checkpoint but {tuple(own[key].shape)} here (trained with other sizes: latent_dim, net, data?)"
                )

    def configure_model(self) -> None:
        """With ``compile=True`` every network is compiled in place by torch.compile (same state_dict keys)."""
        if self.hparams.compile and not getattr(self, "_compiled", False):
            for module in self.children():
                if not isinstance(module, nn.ModuleDict):  # the metrics
                    module.compile()
            self._compiled = True

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


def _check_positive(**values: float) -> None:
    for key, value in values.items():
        if value <= 0:
            raise UserError(f"model.{key} must be > 0, got {value}")
