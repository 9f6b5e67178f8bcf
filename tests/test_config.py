"""Every model x net x data combination composes with Hydra and runs a fast_dev_run."""

import itertools
from pathlib import Path

import pytest
from hydra.utils import instantiate

from cvaezoo.models import MODELS
from cvaezoo.train import CONFIG_DIR, train

from conftest import MODEL_NAMES

CONF_MODELS = sorted(p.stem for p in (Path(CONFIG_DIR) / "model").glob("*.yaml"))
NETS = sorted(p.stem for p in (Path(CONFIG_DIR) / "net").glob("*.yaml"))
DATA = sorted(p.stem for p in (Path(CONFIG_DIR) / "data").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"))


def test_config_groups_are_complete():
    assert CONF_MODELS == sorted(MODELS) and set(MODEL_NAMES) <= set(CONF_MODELS)
    assert {"mlp", "conv"} <= set(NETS) and {"mnist5k", "digits", "idx", "quadrants"} <= set(DATA)


@pytest.mark.parametrize("model, net, data", list(itertools.product(CONF_MODELS, NETS, DATA)))
def test_every_combination_runs_fast_dev_run(compose_config, idx_dir, model, net, data):
    overrides = [f"model={model}", f"net={net}", f"data={data}", "+trainer.fast_dev_run=1", "~logger"]
    if data == "idx":
        overrides += [f"data.root={idx_dir}", "data.val_size=20"]
    if data == "quadrants" and model == "cvae3":
        overrides.append("model.likelihood=bernoulli")  # y is pixels (experiment=quadrants sets this)
    cfg = compose_config(*overrides)
    if data == "quadrants" and model == "m2":
        with pytest.raises(ValueError, match="m2 classifies: it needs class labels"):
            train(cfg)
        return
    metrics = train(cfg)
    assert {"test/elbo", "test/recon", "test/kl", "test/loss", "test/kl_weight"} <= set(metrics)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes(compose_config, experiment):
    cfg = compose_config(f"experiment={experiment}")
    assert instantiate(cfg.data) is not None
    assert cfg.model._target_.startswith("cvaezoo.")


@pytest.mark.parametrize(
    "override, value",
    [("model.latent_dim=3", 3), ("model.beta=0.5", 0.5), ("model.lr=0.01", 0.01), ("data.batch_size=64", 64),
     ("seed=7", 7), ("net.hidden=[64]", [64])],
)
def test_sweepable_values_are_overridable(compose_config, override, value):
    cfg = compose_config(override)
    key = override.split("=")[0]
    node = cfg
    for part in key.split("."):
        node = node[part]
    assert (list(node) if hasattr(node, "__iter__") else node) == value
