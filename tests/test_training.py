"""Short real fits on the embedded data: logged terms, files written, and the bound improves."""

import csv
import json

import lightning as L
import pytest
import torch
from conftest import MODEL_NAMES, SMALL_MNIST

from cvaezoo.checkpoints import load_model
from cvaezoo.runs import build
from cvaezoo.train import train

TERMS = ("elbo", "recon", "kl", "kl_weight", "loss")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_short_fit_lowers_validation_negative_elbo(compose_config, fitted, name):
    """The shared fitted run (25 epochs, 200 steps) against the same model at its seed-0 initialisation."""
    cfg = compose_config(f"model={name}", *SMALL_MNIST, "~logger")
    L.seed_everything(0)
    datamodule, initial = build(cfg)
    quiet = {"enable_progress_bar": False, "enable_model_summary": False, "logger": False}
    validate = L.Trainer(accelerator="cpu", **quiet).validate
    before = validate(initial, datamodule=datamodule, verbose=False)[0]
    after = validate(load_model(fitted[name]), datamodule=datamodule, verbose=False)[0]
    last = torch.load(fitted[name] / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 200
    # random init is far from the data: demand a large, not a marginal, gain
    gain = after["val/elbo"] - before["val/elbo"]
    threshold = 0.5 if name == "cvae3" else 100.0  # nats/example; CVAE-3 starts near log 10 = 2.3
    assert gain > threshold, (before, after)


def test_training_run_writes_checkpoints_metrics_and_samples(compose_config, tmp_path):
    cfg = compose_config("model=cvae1", *SMALL_MNIST, "trainer.max_epochs=2")
    metrics = train(cfg)
    assert (tmp_path / "checkpoints" / "best.ckpt").exists() and (tmp_path / "checkpoints" / "last.ckpt").exists()
    assert (tmp_path / "samples.png").stat().st_size > 1000
    with open(tmp_path / "metrics.csv") as f:
        columns = set(next(csv.reader(f)))
    for stage in ("train", "val", "test"):
        assert {f"{stage}/{t}" for t in TERMS} <= columns, columns
    assert {f"train_step/{t}" for t in ("elbo", "recon", "kl", "loss")} <= columns
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["model"] == "cvae1" and results["test/elbo"] == pytest.approx(metrics["test/elbo"])
    assert results["test/kl"] >= 0 and results["test/recon"] > 0
