"""The pretrained models that ship in the package (experiments/pretrained): each card's numbers are what its weights
give on the embedded test split, so a card cannot drift from its weights; what ships, and its size."""

from __future__ import annotations

import json

import pytest

from cvaezoo.checkpoints import load_model, load_reference, pretrained_models
from cvaezoo.cli import evaluate_main
from cvaezoo.export import headline_metrics
from cvaezoo.runs import compose_config, instantiate_checked

PRETRAINED = pretrained_models()
#: what the README promises: the zoo's four, M2, the VAE and the reference classifier
SHIPPED = {f"mnist5k/{name}" for name in ("cvae1", "cvae2", "cvae3", "cvae4", "m2", "vae", "reference")}


def test_the_promised_models_ship_in_under_ten_megabytes():
    assert set(PRETRAINED) == SHIPPED
    size = sum(path.stat().st_size for folder in PRETRAINED.values() for path in folder.iterdir())
    assert size < 10e6, size


@pytest.mark.parametrize("name", sorted(SHIPPED - {"mnist5k/reference"}))
def test_a_shipped_model_gives_the_numbers_its_card_states(name, tmp_path):
    folder = PRETRAINED[name]
    card, metrics = (folder / "README.md").read_text(), json.loads((folder / "metrics.json").read_text())
    settings = metrics["evaluation"]
    evaluate_main([name, "--out", str(tmp_path), "--seed", str(settings["seed"]), "--iwae-samples",
                   str(settings["iwae_samples"]), "--n-per-class", str(settings["n_per_class"])])
    again = json.loads((tmp_path / "evaluation.json").read_text())
    stated = headline_metrics(metrics)
    assert stated and set(headline_metrics(again)) == set(stated)
    for key, value in stated.items():  # the same seed: the same numbers, up to another machine's rounding
        tolerance = {"abs": 1e-3} if "accuracy" in key or key.startswith(("images/", "test/")) else {"rel": 1e-4}
        assert again[key] == pytest.approx(value, **tolerance), key  # an accuracy: less than one digit of 500
        assert f"| {key} | {value:.4g} |" in card


def test_the_shipped_reference_classifier_gives_its_cards_accuracy():
    folder = PRETRAINED["mnist5k/reference"]
    metrics = json.loads((folder / "metrics.json").read_text())
    reference = load_reference(folder)
    x, y = instantiate_checked(compose_config(["run_dir=."], config_name="reference").data).split_tensors("test")
    assert float((reference.classify(x) == y).float().mean()) == pytest.approx(metrics["test/accuracy"], abs=1e-3)
    with pytest.raises(ValueError, match="holds the reference classifier"):
        load_model(folder)
