"""Every model x net x data combination composes with Hydra and runs a fast_dev_run."""

import itertools
from pathlib import Path

import pytest
from conftest import MODEL_NAMES, compose_overrides, write_celeba_fixture, write_cifar_archive, write_digit_folder
from hydra.utils import get_class, instantiate

from cvaezoo.models import MODELS
from cvaezoo.runs import CONFIG_DIR
from cvaezoo.train import train

CONF_MODELS = sorted(p.stem for p in (Path(CONFIG_DIR) / "model").glob("*.yaml"))
NETS = sorted(p.stem for p in (Path(CONFIG_DIR) / "net").glob("*.yaml"))
DATA = sorted(p.stem for p in (Path(CONFIG_DIR) / "data").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("name", list(MODELS))
def test_every_registered_model_is_trained_by_the_config_of_its_name(name):
    """The registry key, the config file's name and what checkpoints record are one name: conf/model/<name>.yaml
    builds MODELS[<name>], whose model_name is <name>."""
    node = compose_overrides(f"model={name}").model
    assert get_class(node._target_) is MODELS[name] and MODELS[name].registry_name == name


def test_config_groups_are_complete():
    assert set(MODELS) <= set(CONF_MODELS) and set(MODEL_NAMES) <= set(CONF_MODELS)
    assert "reference" in CONF_MODELS  # the discriminative reference classifier, trained by the same train()
    for variant in set(CONF_MODELS) - set(MODELS) - {"reference"}:  # gsnn, hybrid: CVAE-3 with another hybrid_alpha
        assert "defaults" in (Path(CONFIG_DIR) / "model" / f"{variant}.yaml").read_text()
    assert {"mlp", "conv"} <= set(NETS) and {"mnist5k", "digits", "idx", "quadrants", "quadrants_idx", "shapes", "celeba"} <= set(DATA)


# every model on the default data and every data with the default model, with both nets (the fast part), and the rest
# of the model x data product with the MLP (slow: each pair there shares its parts with two fast ones)
CROSS = sorted({*itertools.product(CONF_MODELS, ["mlp", "conv"], ["mnist5k"]), *itertools.product(["cvae1"], ["mlp", "conv"], DATA)})
COMBINATIONS = [*CROSS, *[pytest.param(*combination, marks=pytest.mark.slow)
                          for combination in sorted(set(itertools.product(CONF_MODELS, ["mlp"], DATA)) - set(CROSS))]]


def data_overrides(data: str, tmp_path: Path, idx_dir: Path) -> list[str]:
    """Local files for the data configs that read them (fakes in the real layouts; nothing is downloaded)."""
    if data in ("idx", "quadrants_idx", "mnist", "fashion_mnist"):
        pins = ["data.sha256=null", "data.mirrors=[]"] if data in ("mnist", "fashion_mnist") else []
        return [f"data.root={idx_dir}", "data.val_size=20", *pins]
    if data == "cifar10":
        write_cifar_archive(tmp_path / "cifar" / "cifar-10-binary.tar.gz")
        return [f"data.root={tmp_path / 'cifar'}", "data.val_size=10", "data.sha256=null", "data.mirrors=[]"]
    if data == "folder":
        write_digit_folder(tmp_path / "folder", digits=(0, 1), per_class=10)
        return [f"data.root={tmp_path / 'folder'}"]
    if data == "celeba":
        write_celeba_fixture(tmp_path / "celeba")
        return [f"data.root={tmp_path / 'celeba'}", "data.attr_file=attrs.txt", "data.image_dir=images",
                "data.split=[3,1,1]", "data.image_size=8"]
    return []


@pytest.mark.parametrize("model, net, data", COMBINATIONS)
def test_every_combination_runs_fast_dev_run(compose_config, idx_dir, tmp_path, model, net, data):
    """Every model with every data config (MLP), every model with the conv net, every data with the conv net."""
    overrides = [f"model={model}", f"net={net}", f"data={data}", "+trainer.fast_dev_run=1", "~logger"]
    overrides += data_overrides(data, tmp_path, idx_dir)
    class_labels = data in ("mnist5k", "digits", "idx", "mnist", "fashion_mnist", "cifar10", "folder")  # elsewhere y is pixels or attributes: the default
    cfg = compose_config(*overrides)                       # likelihood follows from the model and the data
    if getattr(get_class(cfg.model._target_), "condition_kinds", None) == ("class",) and not class_labels:  # m2, gfz, gbz, dfz
        with pytest.raises(ValueError, match=f"{model} models the label: it needs class labels"):
            train(cfg)
        return
    if model == "reference" and data.startswith("quadrants"):
        with pytest.raises(ValueError, match="predicts class labels or attributes, not vector outputs"):
            train(cfg)
        return
    metrics = train(cfg)
    expected = {"test/accuracy"} if model == "reference" else {"test/elbo", "test/recon", "test/kl", "test/loss", "test/kl_weight"}
    assert expected <= set(metrics)


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


@pytest.mark.parametrize("model, monitor, mode", [("cvae3", "val/elbo", "max"), ("hybrid", "val/elbo", "max"),
                                                  ("gsnn", "val/loss", "min"), ("cvae1", "val/elbo", "max")])
def test_best_checkpoint_metric_is_the_models_choice(compose_config, model, monitor, mode):
    from lightning.pytorch.callbacks import ModelCheckpoint

    from cvaezoo.runs import build, build_callbacks

    task = ["experiment=quadrants"] if model in ("gsnn", "hybrid") else []
    cfg = compose_config(*task, f"model={model}", "data.split=[100,50,50]")
    (checkpointing,) = [c for c in build_callbacks(cfg, build(cfg)[1]) if isinstance(c, ModelCheckpoint)]
    assert (checkpointing.monitor, checkpointing.mode) == (monitor, mode)


def test_hybrid_logs_its_gsnn_term_beside_the_cvae_terms(compose_config, tmp_path):
    import csv

    train(compose_config("experiment=quadrants", "model=hybrid", "data.split=[100,50,50]", "trainer.max_epochs=1"))
    with open(tmp_path / "metrics.csv") as f:
        logged = {k for row in csv.DictReader(f) for k, v in row.items() if v}
    assert {"train/gsnn_nll", "val/gsnn_nll", "train/elbo", "train/loss"} <= logged


def test_the_reference_drops_the_generative_keys_an_experiment_sets_and_refuses_others():
    """An experiment's model node (here experiment=zoo's pixel_outlier_weight, colour_shapes' likelihood_kwargs) is
    for the models it compares; cvaezoo-reference trains under it without them; a misspelt key still fails."""
    from cvaezoo.reference import generative_keys, without_generative_keys
    from cvaezoo.runs import build, compose_config

    assert {"pixel_outlier_weight", "likelihood_kwargs", "latent_dim", "beta"} <= generative_keys()
    cfg = compose_config(["experiment=zoo", "+model.likelihood_kwargs.scale=shared", "run_dir=."], config_name="reference")
    with pytest.raises(Exception, match="pixel_outlier_weight"):
        build(cfg.copy())
    _, model = build(without_generative_keys(cfg))
    assert type(model).__name__ == "ReferenceClassifier"
    typo = compose_config(["experiment=zoo", "+model.lrr=0.1", "run_dir=."], config_name="reference")
    with pytest.raises(Exception, match="lrr"):
        build(without_generative_keys(typo))
