"""The non-finite guard: a training step whose terms or gradient are not finite never reaches the weights.

``model.on_nonfinite=raise`` stops training before the update (the checkpoints on disk stay the last good
ones); ``skip`` drops the update, counts it and goes on. The step's logged terms and its gradients are checked
together, after the backward pass and before the update: one host synchronisation a step. Under DDP every
process skips (or stops at) the same step, or the others would wait forever in the next gradient all-reduce.
"""

from __future__ import annotations

import lightning as L
import torch
from torch import Tensor

NONFINITE_POLICIES = ("raise", "skip")


class NonFiniteGuard(L.LightningModule):
    """Mixed into every model, which provides the step's pending terms: :meth:`pending_values` (their sums),
    :meth:`nonfinite_terms` (their names, when not finite) and :meth:`take_pending_terms` (log or drop them)."""

    def __init__(self) -> None:
        super().__init__()
        self.skipped_batches = 0  # training batches skipped for a non-finite term or gradient
        #: the parameters, listed at a fit's first check (walking the module tree each step costs more than the check)
        self._guarded_parameters: list[torch.nn.Parameter] | None = None

    def pending_values(self) -> Tensor | None:
        return None

    def nonfinite_terms(self) -> list[str]:
        return []

    def take_pending_terms(self, update_taken: bool) -> None:
        pass

    def all_finite(self, value: Tensor) -> bool:
        """Whether ``value`` is finite here and on every other process: under DDP all processes must skip
        (or stop at) the same step, or the others would wait forever in the gradient all-reduce."""
        finite = bool(torch.isfinite(value).all())
        if self._trainer is not None and self.trainer.world_size > 1:
            finite = self.trainer.strategy.reduce_boolean_decision(finite, all=True)
        return finite

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """One check of the step's terms and gradient norms (one host sync); if any is not finite here or on
        another process, stop (raise) or clear every gradient so that the optimiser leaves the weights (skip)."""
        if self._guarded_parameters is None:
            self._guarded_parameters = list(self.parameters())
        parameters = self._guarded_parameters
        grads = [p.grad for p in parameters if p.grad is not None]
        values = [torch.stack(torch._foreach_norm(grads))] if grads else []
        terms = self.pending_values()
        if terms is not None:
            values.append(terms)
        if not values or self.all_finite(torch.cat(values)):
            self.take_pending_terms(update_taken=True)
            return
        what = self.nonfinite_terms()
        if what:
            self._nonfinite(f"{' and '.join(what)} term")
        elif grads and not bool(torch.isfinite(values[0]).all()):
            self._nonfinite("gradient")
        else:
            self._nonfinite("term or gradient on another process")
        self.take_pending_terms(update_taken=False)
        for p in parameters:  # skip: parameters without a gradient are not updated
            p.grad = None

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
