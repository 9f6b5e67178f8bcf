"""Structured outputs: Sohn et al.'s quadrant completion with CVAE-3, its hybrid and the GSNN."""

import json
import math

import pytest
import torch

from cvaezoo.cli import evaluate_main
from cvaezoo.data import QuadrantMNIST
from cvaezoo.data.quadrants import given_mask
from cvaezoo.inference import evaluate_bound
from cvaezoo.models import CVAE3, Baseline
from cvaezoo.train import train

MISSING = {1: 3 * 196, 2: 2 * 196, 3: 196}


@pytest.mark.parametrize("given", [1, 2, 3])
def test_quadrant_data_shapes_masks_and_reassembly(given):
    dm = QuadrantMNIST(given_quadrants=given, split=(300, 100, 100), binarize="threshold")
    spec = dm.spec
    assert spec.x_shape == (1, 28, 28) and spec.y_kind == "vector" and spec.y_dim == MISSING[given]
    x, y = dm.splits["test"].tensors
    mask = given_mask(28, 28, given)
    assert mask.sum() == 196 * given and mask[14:, :14].all()  # bottom-left is always given
    assert (x[:, :, ~mask] == 0).all() and y.shape == (100, MISSING[given])
    original = QuadrantMNIST(split=(300, 100, 100), binarize="threshold", given_quadrants=1)
    original.setup()
    full = dm.complete(x, y)
    assert set(full.unique().tolist()) <= {0.0, 1.0} and full.sum() > x.sum()
    assert torch.equal(full[:, :, mask], x[:, :, mask]) and torch.equal(full[:, :, ~mask].flatten(1), y)


def test_quadrant_config_errors():
    with pytest.raises(ValueError, match="given_quadrants must be 1, 2 or 3"):
        QuadrantMNIST(given_quadrants=4, binarize="threshold")
    with pytest.raises(ValueError, match="binarize=dynamic"):
        QuadrantMNIST(binarize="dynamic")
    with pytest.raises(ValueError, match="needs model.likelihood=bernoulli or gaussian, got 'categorical'"):
        CVAE3(x_shape=(1, 4, 4), y_kind="vector", y_dim=8, likelihood="categorical")
    with pytest.raises(ValueError, match="hybrid_alpha must lie in"):
        CVAE3(x_shape=(1, 4, 4), y_dim=3, likelihood="categorical", hybrid_alpha=1.5)


def small_cvae3(**kwargs) -> CVAE3:
    return CVAE3(x_shape=(1, 4, 4), y_kind="vector", y_dim=8, likelihood="bernoulli", net={"hidden": [16]},
                 latent_dim=2, **kwargs).double()


def toy_batch():
    return torch.rand(5, 1, 4, 4, dtype=torch.double), torch.bernoulli(torch.full((5, 8), 0.5, dtype=torch.double))


def test_conditional_log_likelihood_with_one_sample_is_the_single_sample_bound():
    model = small_cvae3()
    x, y = toy_batch()
    torch.manual_seed(0)
    one = model.conditional_log_likelihood(x, y, samples=1)
    torch.manual_seed(0)
    q, p = model.posterior(x, y), model.prior(x, None)
    z = q.rsample(1)
    single = model.log_likelihood(z, x, None, y)[0] + p.log_prob(z[0]) - q.log_prob(z[0])
    assert torch.allclose(one, single)
    torch.manual_seed(0)
    prior_one = model.conditional_log_likelihood(x, y, samples=1, proposal="prior")
    torch.manual_seed(0)
    assert torch.allclose(prior_one, -model.gsnn_nll(x, y, samples=1))
    many = model.conditional_log_likelihood(x, y, samples=100)
    assert torch.isfinite(many).all() and (many < 0).all()


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_hybrid_loss_mixes_the_bound_and_the_gsnn_loss(alpha):
    model = small_cvae3(hybrid_alpha=alpha)
    x, y = toy_batch()
    terms = model.elbo_terms(x, y)
    torch.manual_seed(4)
    loss = model.training_loss(x, y, terms, kl_weight=1.0)
    torch.manual_seed(4)
    gsnn = model.gsnn_nll(x, y)
    assert torch.allclose(loss, alpha * (terms.recon + terms.kl) + (1 - alpha) * gsnn)


@pytest.mark.parametrize("model", ["baseline", "gsnn", "cvae3", "hybrid"])
def test_quadrant_experiment_trains_every_model_and_draws_completions(compose_config, tmp_path, model):
    # the GSNN's q(z|x,y) is untrained: it keeps the checkpoint with the best val/loss, as in experiments/quadrants
    selection = ["callbacks.model_checkpoint.monitor=val/loss", "callbacks.model_checkpoint.mode=min"] if model == "gsnn" else []
    cfg = compose_config("experiment=quadrants", f"model={model}", "data.split=[300,100,100]", "trainer.max_epochs=1", "~logger",
                         *selection)
    metrics = train(cfg)
    assert metrics["test/recon"] > 0
    best = "val/loss_best" if model == "gsnn" else "val/elbo_best"
    assert metrics["objective"] == pytest.approx(metrics[best] if model == "gsnn" else -metrics[best])
    assert (tmp_path / "samples.png").stat().st_size > 1000  # input, truth and completions per row
    trained = (Baseline if model == "baseline" else CVAE3).load_from_checkpoint(tmp_path / "checkpoints" / "best.ckpt")
    data = QuadrantMNIST(given_quadrants=1, split=(300, 100, 100), binarize="threshold")
    data.setup()
    x, y = data.splits["test"].tensors
    evaluation = evaluate_bound(trained, x[:50], y[:50], iwae_samples=10)
    # a finite -log p(y|x) for every model, no worse than 588 missing pixels at p = 1/2 after one epoch
    assert 0 < evaluation["cnll_s10"] < 588 * math.log(2)
    if model == "baseline":  # exact: the bound, the IWAE and the conditional likelihood coincide
        assert evaluation["cnll_s10"] == pytest.approx(-evaluation["elbo"]) == pytest.approx(-evaluation["iwae_k10"])
    evaluate_main([str(tmp_path), "experiment=quadrants", "data.split=[300,100,100]", "--iwae-samples", "2", "--n-completions", "4",
                   "--out", str(tmp_path / "e")])  # the data overrides: this run has no Hydra record
    scores = json.loads((tmp_path / "e" / "evaluation.json").read_text())
    assert 0 < scores["best_of_s_error"] <= scores["mean_error"] < 1 and scores["n_samples"] == 4
    if model == "baseline":  # one prediction per input: every draw is the same
        assert scores["pairwise_distance"] == 0 and scores["best_of_s_error"] == pytest.approx(scores["mean_error"])
    else:
        assert scores["pairwise_distance"] > 0


def small_baseline(**kwargs) -> Baseline:
    return Baseline(x_shape=(1, 4, 4), y_kind="vector", y_dim=8, likelihood="bernoulli", net={"hidden": [16]}, **kwargs).double()


def test_baseline_likelihood_is_the_bernoulli_of_its_prediction():
    """Without the outlier its pixels' likelihood is the Bernoulli of its prediction; by default (its target is
    pixels) the outlier of weight 0.01 is mixed into each."""
    assert small_baseline().likelihood.weight == 0.01
    model = small_baseline(pixel_outlier_weight=0)
    x, y = toy_batch()
    logits = model.predictor_head(model.predictor_trunk(x))
    expected = -torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none").sum(1)
    assert torch.allclose(model.elbo_terms(x, y).elbo, expected)  # exact: no bound to switch off
    assert evaluate_bound(model, x, y, iwae_samples=7)["cnll_s7"] == pytest.approx(float(-expected.mean()))
    assert torch.allclose(model.elbo_terms(x, y).kl, torch.zeros(5, dtype=torch.double))
    draws = model.sample(x, 3)
    assert draws.shape == (5, 3, 8)
    # one prediction per input: equal up to float rounding, which depends on the batch layout
    assert torch.allclose(draws[:, 0], draws[:, 2], rtol=0, atol=1e-12)
    assert not hasattr(model, "posterior_net")
    with pytest.raises(ValueError, match="baseline with y_kind='vector' needs model.likelihood=bernoulli"):
        Baseline(x_shape=(1, 4, 4), y_kind="vector", y_dim=8, likelihood="categorical")


def test_baseline_classifies_class_labels():
    model = Baseline(x_shape=(1, 4, 4), y_dim=3, likelihood="categorical", net={"hidden": [8]})
    probs = model.predict_proba(torch.rand(6, 1, 4, 4))
    assert probs.shape == (6, 3) and torch.allclose(probs.sum(1), torch.ones(6))


def test_prior_network_initialised_from_a_baseline_checkpoint(compose_config, tmp_path):
    base_cfg = compose_config("experiment=quadrants", "model=baseline", "data.split=[300,100,100]", "trainer.max_epochs=1",
                              "~logger")
    train(base_cfg)
    baseline = Baseline.load_from_checkpoint(tmp_path / "checkpoints" / "best.ckpt")
    cvae_dir = tmp_path / "cvae"
    cfg = compose_config("experiment=quadrants", f"model.init_prior_from={tmp_path}", "data.split=[300,100,100]",
                         "trainer.max_steps=1", "~logger", f"run_dir={cvae_dir}")
    from cvaezoo.runs import build

    _, model = build(cfg)
    model.on_fit_start()  # a fresh fit: global_step 0
    for name, tensor in baseline.predictor_trunk.state_dict().items():
        assert torch.equal(model.prior_net.features.state_dict()[name], tensor)
    wrong = CVAE3(x_shape=(1, 28, 28), y_kind="vector", y_dim=588, likelihood="bernoulli", net={"hidden": [8]},
                  init_prior_from=str(tmp_path))
    with pytest.raises(ValueError, match="does not fit this prior network"):
        wrong.on_fit_start()
