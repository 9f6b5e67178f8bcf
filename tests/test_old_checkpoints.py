"""Checkpoints written before the model base class was split (commit 378172a, by
tests/data/old_checkpoints/make.py run with that code) still load, and give the outputs that code gave: the same
bound, classifier mode and samples for the same inputs and seeds."""

import json
from pathlib import Path

import pytest
import torch

from cvaezoo.checkpoints import load_model

OLD = Path(__file__).parent / "data" / "old_checkpoints"
EXPECTED = json.loads((OLD / "expected.json").read_text())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_checkpoint_of_the_old_layout_loads_and_answers_as_it_did(name):
    model = load_model(OLD / f"{name}.ckpt", expected=name)
    old = EXPECTED[name]
    x, y = torch.tensor(old["x"]), torch.tensor(old["y"])
    with torch.no_grad():
        torch.manual_seed(1)
        elbo = model.elbo_terms(x, y, samples=1) if model.has_latent else model.elbo_terms(x, y)
        assert torch.allclose(elbo.elbo, torch.tensor(old["elbo"]), atol=1e-5)
        if "probs" in old:
            torch.manual_seed(2)
            assert torch.allclose(model.predict_proba(x), torch.tensor(old["probs"]), atol=1e-6)  # the default mode
        torch.manual_seed(3)
        condition = y[:2] if model.target_name == "x" else x[:2]
        assert torch.allclose(model.sample(condition, 2), torch.tensor(old["sample"]), atol=1e-6)


def test_the_baseline_refuses_a_latent_setting_it_cannot_use():
    from cvaezoo.errors import UserError
    from cvaezoo.models import Baseline

    with pytest.raises(UserError, match="model.beta does not apply: the baseline has no latent z"):
        Baseline(x_shape=(1, 4, 4), y_dim=3, net={"hidden": [8]}, beta=0.5)
    assert "beta" not in Baseline(x_shape=(1, 4, 4), y_dim=3, net={"hidden": [8]}, beta=1.0, latent_dim=32).hparams
