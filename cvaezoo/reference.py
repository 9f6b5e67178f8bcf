"""Hydra entry point ``cvaezoo-reference [data=...]``: the reference classifier (``model=reference``), trained by
the same :func:`cvaezoo.runs.train` as every model, into ``runs/reference/<data>``; ``cvaezoo-evaluate`` then
labels generated samples with it.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from cvaezoo.errors import one_line_errors
from cvaezoo.runs import CONFIG_DIR, run_record_kept, train


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="reference")
def main(cfg: DictConfig) -> None:
    with one_line_errors("cvaezoo-reference"), run_record_kept():
        train(cfg)


if __name__ == "__main__":
    main()
