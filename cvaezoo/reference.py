"""Hydra entry point ``cvaezoo-reference [data=...]``: the reference classifier (``model=reference``), trained by
the same :func:`cvaezoo.runs.train` as every model, into ``runs/reference/<data>``; ``cvaezoo-evaluate`` then
labels generated samples with it.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from cvaezoo.errors import one_line_errors
from cvaezoo.models.reference import ReferenceClassifier
from cvaezoo.runs import CONFIG_DIR, run_record_kept, train


def generative_keys(config_dir: str = CONFIG_DIR) -> set[str]:
    """The model keys every generative model shares (conf/model/common/*.yaml), which an experiment may set for all
    the models it trains."""
    return {key for path in sorted((Path(config_dir) / "model" / "common").glob("*.yaml"))
            for key in OmegaConf.load(path) if key != "defaults"}


def without_generative_keys(cfg: DictConfig) -> DictConfig:
    """``cfg`` with the shared generative-model keys the reference classifier does not take dropped from its model
    node (an experiment's ``model.likelihood_kwargs`` or ``model.pixel_outlier_weight`` is for the models it compares);
    any other unknown key is left for the model to refuse."""
    accepted = set(inspect.signature(ReferenceClassifier.__init__).parameters)
    with open_dict(cfg):
        for key in generative_keys() - accepted:
            cfg.model.pop(key, None)
    return cfg


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="reference")
def main(cfg: DictConfig) -> None:
    with one_line_errors("cvaezoo-reference"), run_record_kept():
        train(without_generative_keys(cfg))


if __name__ == "__main__":
    main()
