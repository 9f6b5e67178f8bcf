"""Callbacks that make a run resumable exactly: interrupt checkpoints and random-number state."""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException


class LastStateCheckpoint(L.Callback):
    """Keep ``last.ckpt`` at the latest state: on Ctrl-C (SIGINT) or SIGTERM, and when training stops
    between two epoch-end checkpoints (``max_steps`` after a mid-epoch resume), so ``ckpt_path=last``
    resumes from where the run really stopped.

    Ctrl-C asks for the same graceful stop as SIGTERM: Lightning stops at the next step or validation batch
    boundary, where the loop counters describe a state a resume can continue from (a KeyboardInterrupt can land
    anywhere, e.g. after an epoch's last step but inside its validation, and a checkpoint saved there made the
    resumed run skip that validation). A second Ctrl-C quits at once and saves nothing: ``last.ckpt`` then stays
    the last consistent checkpoint.

    Errors (a non-finite loss, a bug) write nothing, so the last good checkpoint stays as it was.
    Lightning saves checkpoints atomically (a temporary file renamed into place).
    """

    def __init__(self, dirpath: str | Path):
        self.dirpath = Path(dirpath)
        self._first_batch = True
        self._previous_sigint: Any = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._first_batch = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # here, not in on_fit_start: Lightning notes the handlers after on_fit_start and restores them at teardown.
        # Only in the main thread (the only one that may set handlers), and only where Ctrl-C is Python's
        # KeyboardInterrupt: an ignored SIGINT (a job started in the background with `&`) or a handler of the
        # caller's stays as it is.
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous_sigint = signal.signal(signal.SIGINT, self._stop_gracefully)

    def _stop_gracefully(self, signum: int, frame: Any) -> None:
        self._restore_sigint()  # a second Ctrl-C is a KeyboardInterrupt again
        print("cvaezoo: Ctrl-C: stopping at the next step and saving last.ckpt (Ctrl-C again quits at once "
              "without saving)", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)  # Lightning's graceful stop; under DDP it reaches every rank

    def _restore_sigint(self) -> None:
        if self._previous_sigint is not None:
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore_sigint()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        """Lightning numbers logged rows by a counter that, at the start of a step, equals ``global_step`` in an
        uninterrupted run; after a mid-epoch resume it can be one ahead, depending on where the interrupt came
        (it adds one on restart). Restore the invariant, so that a resumed run logs each step number once."""
        if self._first_batch:
            trainer.fit_loop.epoch_loop._batches_that_stepped = trainer.global_step
            self._first_batch = False

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        saved_at = getattr(trainer.checkpoint_callback, "_last_global_step_saved", None)
        if saved_at is not None and saved_at != trainer.global_step:
            trainer.save_checkpoint(self.dirpath / "last.ckpt")

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore_sigint()
        if isinstance(exception, SIGTERMException) and trainer.state.fn == "fit":
            self._save_interrupted(trainer)
            print(f"cvaezoo: interrupted at step {trainer.global_step}; saved {self.dirpath / 'last.ckpt'} "
                  "(resume with ckpt_path=last and the same hydra.run.dir)")
        elif isinstance(exception, KeyboardInterrupt):
            print(f"cvaezoo: quit at step {trainer.global_step} without saving; {self.dirpath / 'last.ckpt'} is "
                  "the last saved checkpoint", file=sys.stderr)

    def _save_interrupted(self, trainer: L.Trainer) -> None:
        """Save last.ckpt. Lightning checks for SIGTERM after it has counted an epoch complete, when the batch
        counters still describe that finished epoch; saved as they are, a resume would take them for the next
        epoch's and skip it. Between epochs they are saved as they stand at the start of the next one."""
        epoch_loop = trainer.fit_loop.epoch_loop
        epochs = trainer.fit_loop.epoch_progress.current
        between_epochs = epochs.completed == epochs.ready and epoch_loop.batch_progress.current.completed >= trainer.num_training_batches
        progress = [epoch_loop.batch_progress, epoch_loop.scheduler_progress, epoch_loop.automatic_optimization.optim_progress]
        kept = [p.state_dict() for p in progress]
        if between_epochs:
            for p in progress:
                p.reset_on_run()
        try:
            trainer.save_checkpoint(self.dirpath / "last.ckpt")
        finally:
            for p, state in zip(progress, kept):
                p.load_state_dict(state)


class RNGStateCheckpoint(L.Callback):
    """Store the Python, NumPy and torch random states in checkpoints and restore them on resume."""

    def state_dict(self) -> dict[str, Any]:
        # only tensors and plain Python values, so that weights_only checkpoint loading accepts them
        name, keys, position, has_gauss, cached = np.random.get_state()
        numpy_state = {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}
        return {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        random.setstate(state_dict["python"])
        n = state_dict["numpy"]
        np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["position"], n["has_gauss"], n["cached_gaussian"]))
        torch.set_rng_state(state_dict["torch"])
