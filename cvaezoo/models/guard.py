"""The non-finite guard: a training step whose loss or gradient is not finite never reaches the weights.

``model.on_nonfinite=raise`` stops training before the update (the checkpoints on disk stay the last good
ones); ``skip`` drops the update, counts it and goes on. Under DDP every process skips (or stops at) the same
step, or the others would wait forever in the next gradient all-reduce.
"""

from __future__ import annotations

import lightning as L
import torch
from torch import Tensor

NONFINITE_POLICIES = ("raise", "skip")


class NonFiniteGuard(L.LightningModule):
    """Mixed into every model: :meth:`skip_update` from a step, and the optimiser hooks that honour it."""

    def __init__(self) -> None:
        super().__init__()
        self.skipped_batches = 0  # training batches skipped for a non-finite loss or gradient
        self._skip_update = False  # set by a non-finite training loss: optimizer_step drops this step's update

    def all_finite(self, value: Tensor) -> bool:
        """Whether ``value`` is finite here and on every other process: under DDP all processes must skip
        (or stop at) the same step, or the others would wait forever in the gradient all-reduce."""
        finite = bool(torch.isfinite(value).all())
        if self._trainer is not None and self.trainer.world_size > 1:
            finite = self.trainer.strategy.reduce_boolean_decision(finite, all=True)
        return finite

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
