"""Hydra entry point: ``cvaezoo-train model=cvae2 net=conv data=digits seed=3``.

A thin wrapper of :func:`cvaezoo.runs.train` (a plain function, used by tests and sweeps), which fits
the model, tests the best checkpoint, and writes into the run directory: ``checkpoints/{best,last}.ckpt``,
``metrics.csv`` (every logged term), ``results.json`` (final test metrics) and ``samples.png``.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from cvaezoo.errors import one_line_errors
from cvaezoo.runs import CONFIG_DIR, run_record_kept, train

__all__ = ["main", "train"]


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> float:
    """Train; returns the best value of the checkpoint metric, as a loss (-val/elbo by default): what a sweeper minimises.

    A bad config value, data or checkpoint ends the run with one line naming it (HYDRA_FULL_ERROR=1: traceback),
    before anything is written; the run directory's .hydra record is put back (runs.KeepRunRecord).
    """
    with one_line_errors("cvaezoo-train"), run_record_kept():
        metrics = train(cfg)
    return metrics.get("objective", float("nan"))


if __name__ == "__main__":
    main()
