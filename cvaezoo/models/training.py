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
from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
from torchmetrics import Metric

from cvaezoo.checkpoint_files import CHECKPOINT_FORMAT, check_checkpoint_fits, check_checkpoint_format
from cvaezoo.distributions import WithOutliers
from cvaezoo.models.guard import NonFiniteGuard

STAGES = ("train", "val", "test")
#: the terms every step logs, in the order of its per-example rows
STEP_TERMS = ("elbo", "recon", "kl", "loss", "kl_weight")
#: terms computed from the others (not named as the culprit when one of the others is non-finite)
DERIVED_TERMS = ("elbo", "loss", "kl_weight")


def adam(parameters, lr: float, weight_decay: float = 0.0, fused: bool = True) -> torch.optim.Adam:
    """Adam, in its fused form (one kernel for every parameter) if ``fused`` and torch has it for the parameters'
    device and dtype (torch itself checks only at the first step): on two CPU cores it takes about 0.5 ms a step
    for the MLP zoo model's 1.2 M parameters instead of 3-4 ms. Lightning builds the optimiser once the model is
    on its device."""
    parameters = list(parameters)
    devices = _get_fused_kernels_supported_devices()
    fused = fused and all(p.device.type in devices and torch.is_floating_point(p) for p in parameters)
    return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay, fused=fused or None)


class TermMeans(Metric):
    """Epoch means of named per-example terms, all updated by one call: a running sum and count per term, summed
    over processes (so a mean is over every example on every process)."""

    full_state_update = False

    def __init__(self, names: tuple[str, ...]) -> None:
        super().__init__()
        self.names = names
        self._rows = {name: i for i, name in enumerate(names)}
        self._subsets: dict[tuple, Tensor] = {}  # the rows of each subset of names met, per device
        self.add_state("sums", torch.zeros(len(names)), dist_reduce_fx="sum")
        self.add_state("counts", torch.zeros(len(names)), dist_reduce_fx="sum")

    def update(self, names: tuple[str, ...], sums: Tensor, count: int) -> None:
        """Add ``sums`` (one per name) of ``count`` examples."""
        if names == self.names:
            self.sums += sums
            self.counts += count
        else:  # a subset (a term some steps leave out)
            key = (names, self.sums.device)
            if key not in self._subsets:
                self._subsets[key] = torch.tensor([self._rows[name] for name in names], device=self.sums.device)
            rows = self._subsets[key]
            self.sums.index_add_(0, rows, sums)
            self.counts.index_add_(0, rows, torch.full_like(sums, count))

    def compute(self) -> dict[str, Tensor]:
        """The mean of every term that has examples."""
        return {name: self.sums[i] / count for i, (name, count) in enumerate(zip(self.names, self.counts.tolist()))
                if count > 0}


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
        """One accumulator of every term per stage (called once the networks exist, so that they come first)."""
        self.metrics = nn.ModuleDict({f"{stage}_terms": TermMeans((*STEP_TERMS, *self.extra_terms)) for stage in STAGES})
        self._pending_terms: list[tuple[tuple[str, ...], Tensor, int]] = []

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
        per_example = [terms.elbo, terms.recon, terms.kl, loss, torch.full_like(loss, float(kl_weight))]
        self.accumulate(stage, (*STEP_TERMS, *terms.extras), torch.stack([*per_example, *terms.extras.values()]))
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
    def accumulate(self, stage: str, names: tuple[str, ...], per_example: Tensor) -> None:
        """Add per-example values, shape (len(names), B), to the stage's epoch sums (no host sync).

        A training step's values wait for the non-finite guard, which checks them with the step's gradients
        in one go (:meth:`pending_values`): they are added once the update is taken, dropped with it otherwise.
        """
        entry = (names, per_example.detach().float().sum(1), per_example.shape[1])  # float32 sums, whatever the precision
        if stage == "train":
            self._pending_terms.append(entry)
        else:
            self.metrics[f"{stage}_terms"].update(*entry)

    def pending_values(self) -> Tensor | None:
        """The sums of the training terms accumulated since the last update (what the guard checks), or None."""
        return torch.cat([sums for _, sums, _ in self._pending_terms]) if self._pending_terms else None

    def nonfinite_terms(self) -> list[str]:
        """The pending training terms that are not finite: the bound's recon and kl first, else any other."""
        bad = [name for names, sums, _ in self._pending_terms
               for name, finite in zip(names, torch.isfinite(sums).tolist()) if not finite]
        return [name for name in ("recon", "kl") if name in bad] or [n for n in bad if n not in DERIVED_TERMS] or bad

    def take_pending_terms(self, update_taken: bool) -> None:
        """Add the pending training terms to the epoch sums if the update was taken, else drop them; on the steps
        Lightning writes ((step + 1) a multiple of log_every_n_steps) the last batch's means are logged as
        ``train_step/<term>``."""
        pending, self._pending_terms = self._pending_terms, []
        if not update_taken:
            return
        for entry in pending:
            self.metrics["train_terms"].update(*entry)
        last = next((entry for entry in reversed(pending) if entry[0][: len(STEP_TERMS)] == STEP_TERMS), None)
        if last is not None and (self.global_step + 1) % self.trainer.log_every_n_steps == 0:
            _, sums, count = last
            means = sums[: len(STEP_TERMS)] / count
            self.log_dict({f"train_step/{name}": means[i] for i, name in enumerate(STEP_TERMS)}, on_step=True,
                          on_epoch=False)

    def log_epoch_terms(self, stage: str) -> None:
        """Log the epoch mean of each term, over every example on every process (torchmetrics syncs)."""
        metric = self.metrics[f"{stage}_terms"]
        if metric.update_count == 0:
            return
        for name, value in metric.compute().items():
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
        """Terms left pending by an interrupted fit are dropped, the guard lists the parameters afresh. Under DDP, each process draws its own random numbers (binarisation, posterior noise): its torch
        generator is reseeded with a number drawn from the common seeded stream plus its rank, so runs stay
        reproducible. (Weights are initialised before this, identically on every process.)"""
        self._pending_terms, self._guarded_parameters = [], None
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
        checkpoint["cvaezoo_format"] = CHECKPOINT_FORMAT

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Refuse a checkpoint of another model, of the same model sized differently, or of a format whose weights
        mean another distribution here."""
        check_checkpoint_fits(checkpoint, self.model_name, self.state_dict())
        check_checkpoint_format(checkpoint, self.likelihood.oldest_checkpoint_format)
        if int(checkpoint.get("cvaezoo_format", 1)) < 3 and isinstance(self.likelihood, WithOutliers):
            self.likelihood = self.likelihood.inner  # trained before the outlier weight existed: without one
            self.hparams.pixel_outlier_weight = 0.0

    def configure_model(self) -> None:
        """With ``compile=True`` every network is compiled in place by torch.compile (same state_dict keys)."""
        if self.hparams.compile and not getattr(self, "_compiled", False):
            for module in self.children():
                if not isinstance(module, nn.ModuleDict):  # the metrics
                    module.compile()
            self._compiled = True

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam, fused unless a gradient scaler (precision 16-mixed) runs the step: Lightning leaves the unscaling
        to a fused optimiser, which then refuses gradient clipping and a step whose gradients the guard cleared."""
        scaler = getattr(self._trainer.precision_plugin, "scaler", None) if self._trainer is not None else None
        return adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay, fused=scaler is None)
