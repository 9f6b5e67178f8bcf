"""The Lightning side shared by every model: the steps, the epoch means of every term, the optimiser.

A model gives per-example terms (:meth:`TrainedModel.elbo_terms`) and what is minimised
(:meth:`TrainedModel.training_loss`); this module logs them and takes the steps. The maths lives in the
model classes (:mod:`cvaezoo.models.bound` for the bound), the non-finite guard in
:mod:`cvaezoo.models.guard`, and what a checkpoint must hold in :mod:`cvaezoo.checkpoint_files`.

Metric scheme, for stage in {train, val, test}, epoch means per example, in nats
(``train_step/<term>`` holds the per-batch training values):
    {stage}/recon      -E_q[log p(target|z,...)], the reconstruction term (a negative log-likelihood: >= 0 for a
                       probability mass, of either sign for a density)
    {stage}/kl         KL(q || p) >= 0
    {stage}/elbo       -(recon + kl), the evidence lower bound itself
    {stage}/kl_weight  the KL weight (beta times warm-up) used for the loss
    {stage}/loss       recon + kl_weight * kl, what the optimiser minimises
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric

from cvaezoo.checkpoint_files import check_checkpoint_fits
from cvaezoo.models.guard import NonFiniteGuard

STAGES = ("train", "val", "test")
TERMS = ("elbo", "recon", "kl", "kl_weight", "loss")


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


class TrainedModel(NonFiniteGuard):
    """Steps, logging and optimiser of a model whose subclass defines ``elbo_terms``, ``likelihood``,
    ``bits_per_dim`` and the ``extra_terms`` it logs; hyper-parameters ``lr``, ``weight_decay``, ``compile``
    and ``on_nonfinite``."""

    #: names of per-example terms a model adds to ``ElboTerms.extras``; logged as {stage}/<name> like the bound's
    extra_terms: tuple[str, ...] = ()

    def make_metrics(self) -> None:
        """One accumulator per stage and term (called once the networks exist, so that they come first)."""
        # nan_strategy="disable": no NaN scan per update (the loss is checked once per step instead)
        self.metrics = nn.ModuleDict(
            {f"{s}_{t}": MeanMetric(nan_strategy="disable") for s in STAGES for t in (*TERMS, *self.extra_terms)}
        )

    def elbo_terms(self, x: Tensor, y: Tensor) -> ElboTerms:
        """The per-example terms of the model's objective."""
        raise NotImplementedError

    def kl_weight(self) -> float:
        """The weight of the KL term in the loss (models with a latent warm it up)."""
        return 1.0

    def training_loss(self, x: Tensor, y: Tensor, terms: ElboTerms, kl_weight: float) -> Tensor:
        """What is minimised, per example: recon + kl_weight * KL (models may add terms)."""
        return terms.recon + kl_weight * terms.kl

    # ----- steps ----------------------------------------------------------------------------
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

    def training_step(self, batch: tuple[Tensor, Tensor] | dict, batch_idx: int) -> Tensor:
        if isinstance(batch, dict):  # semi-supervised data (data.labels_per_class): these models use the labels only
            batch = batch["labelled"]
        return self._shared_step(batch, "train")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._shared_step(batch, "test")

    # ----- logging --------------------------------------------------------------------------
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

    def on_train_start(self) -> None:
        """Under DDP, each process draws its own random numbers (binarisation, posterior noise): its torch
        generator is reseeded with a number drawn from the common seeded stream plus its rank, so runs stay
        reproducible. (Weights are initialised before this, identically on every process.)"""
        if self.trainer.world_size > 1:
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,))) + self.trainer.global_rank)

    # ----- checkpoints and optimiser --------------------------------------------------------
    @property
    def model_name(self) -> str:
        """The registry name of this model (``cvae1`` ... ``cvae4``), which its checkpoints record: its module's
        name for a model of the package (:mod:`cvaezoo.models`), else its class name in lower case."""
        return vars(type(self)).get("registry_name") or type(self).__name__.lower()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["cvaezoo_model"] = self.model_name

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Refuse a checkpoint of another model, or of the same model sized differently."""
        check_checkpoint_fits(checkpoint, self.model_name, self.state_dict())

    def configure_model(self) -> None:
        """With ``compile=True`` every network is compiled in place by torch.compile (same state_dict keys)."""
        if self.hparams.compile and not getattr(self, "_compiled", False):
            for module in self.children():
                if not isinstance(module, nn.ModuleDict):  # the metrics
                    module.compile()
            self._compiled = True

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
