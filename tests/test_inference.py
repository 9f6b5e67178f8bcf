"""Classifier mode, generation and evaluation on models fitted briefly on the embedded data."""

import json
import subprocess

import pytest
import torch
from conftest import MODEL_NAMES, QUIET, SMALL_MNIST, compose_overrides
from hydra.utils import instantiate

from cvaezoo.checkpoints import CheckpointError, load_model
from cvaezoo.data.base import binarize_fixed
from cvaezoo.figures import analogy_grid, interpolation_grid, reconstruction_grid
from cvaezoo.inference import classification_metrics, conditional_generation_accuracy, evaluate_bound, predict_proba
from cvaezoo.models import CVAE1, CVAE2
from cvaezoo.models.reference import ReferenceClassifier
from cvaezoo.robustness import PIXEL_NOISES, random_noise
from cvaezoo.runs import compose_config
from cvaezoo.sample_quality import frechet_distance, reference_features, sample_quality
from cvaezoo.train import train

# Chance is 10% on the ten balanced digit classes. After 200 steps on 1 000 digits the
# predictive CVAE-3 is a trained classifier (> 70%); the Bayes-rule classifiers of the
# generative models must be at least 4x chance (they reach about 60-85% here).


@pytest.fixture(scope="module")
def test_split():
    datamodule = instantiate(compose_overrides(*SMALL_MNIST, "run_dir=.").data)
    datamodule.setup()
    return datamodule.splits["test"].tensors


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> ReferenceClassifier:
    run_dir = tmp_path_factory.mktemp("reference")
    cfg = compose_config([*QUIET, *SMALL_MNIST, "trainer.max_epochs=5", f"run_dir={run_dir}"], config_name="reference")
    metrics = train(cfg)
    assert metrics["test/accuracy"] > 0.85
    return ReferenceClassifier.load_from_checkpoint(run_dir / "checkpoints" / "best.ckpt").eval()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_classifier_accuracy_far_above_chance_after_short_fit(fitted, test_split, name):
    model = load_model(fitted[name], expected=name)
    x, y = test_split
    method = next(iter(model.classifier_methods))  # each model's default classifier mode
    probs = predict_proba(model, x, method=method, samples=model.classifier_methods[method])
    assert torch.allclose(probs.sum(1), torch.ones(len(x)), atol=1e-4)
    metrics = classification_metrics(probs, y)
    threshold = 0.7 if model.target_name == "y" else 0.4  # a trained predictor, or Bayes rule over the bound
    assert metrics["accuracy"] > threshold, metrics["accuracy"]
    assert sum(map(sum, metrics["confusion_matrix"])) == len(x)
    confidence, predicted = probs.max(1)
    true_class = probs[torch.arange(len(y)), y].clamp_min(1e-12)  # the documented floor: no infinite NLL
    assert metrics["nll"] == pytest.approx(float(-true_class.log().mean()), rel=1e-5)
    bins = torch.clamp((confidence * 15).ceil().long() - 1, 0, 14)  # 15 equal-width confidence bins
    ece = sum((bins == b).float().mean() * ((predicted == y)[bins == b].float().mean() - confidence[bins == b].mean()).abs()
              for b in range(15) if (bins == b).any())
    assert metrics["ece"] == pytest.approx(float(ece), abs=1e-5)


def test_cvae3_deterministic_and_monte_carlo_modes_agree_mostly(fitted, test_split):
    model = load_model(fitted["cvae3"])
    x, _ = test_split
    mean_mode = model.predict_proba(x, method="mean")
    mc_mode = model.predict_proba(x, samples=50)
    assert (mean_mode.argmax(1) == mc_mode.argmax(1)).float().mean() > 0.9


def test_batched_class_bounds_equal_one_class_at_a_time(fitted, test_split):
    model = load_model(fitted["cvae1"]).double()
    x = test_split[0][:7].double()
    torch.manual_seed(3)
    with torch.no_grad():
        batched = model.class_bounds(x, samples=4, method="iwae")
    torch.manual_seed(3)
    eps = torch.randn(4, 1, 7, model.latent_dim, dtype=torch.double)[:, 0]
    for label in range(10):
        single = model.iwae_bound(x, torch.full((7,), label), samples=4, eps=eps)
        assert torch.allclose(batched[:, label], single, atol=1e-8)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_iwae_is_not_below_the_elbo_on_average(fitted, test_split, name):
    model = load_model(fitted[name])
    x, y = test_split
    torch.manual_seed(0)
    result = evaluate_bound(model, x, y, iwae_samples=50)
    # image models: importance weighting gains nats (about 5 in the zoo table); CVAE-3's bound on log p(y|x) is
    # nearly tight (hundredths), so there only "not below", up to the ELBO estimate's own Monte-Carlo noise
    margin = 1.0 if model.target_name == "x" else -0.02
    assert result["iwae_k50"] > result["elbo"] + margin, result


def test_generated_images_have_data_shape_and_requested_labels(fitted, reference):
    model = load_model(fitted["cvae1"])
    samples = model.sample(torch.tensor([1, 7]), n=4, temperature=0.5)
    assert samples.shape == (2, 4, 1, 28, 28) and samples.min() >= 0 and samples.max() <= 1
    binary = model.sample(torch.tensor([1]), n=4, use_mean=False)
    assert set(binary.unique().tolist()) <= {0.0, 1.0}
    accuracy = conditional_generation_accuracy(model, reference, n_per_class=50)
    assert len(accuracy["per_class"]) == 10
    assert accuracy["overall"] > 0.5, accuracy  # chance is 0.1


def test_grids_have_the_documented_shapes(fitted, test_split):
    x, y = test_split[0][:3], test_split[1][:3]
    model = load_model(fitted["cvae2"])
    assert reconstruction_grid(model, x, y).shape == (3, 2, 1, 28, 28)
    analogy = analogy_grid(model, x, y)
    assert analogy.shape == (3, 11, 1, 28, 28) and torch.equal(analogy[:, 0], x)
    assert interpolation_grid(model, x, x.flip(0), y, steps=5).shape == (3, 5, 1, 28, 28)
    with pytest.raises(ValueError, match="never sees y"):
        analogy_grid(load_model(fitted["cvae4"]), x, y)
    with pytest.raises(ValueError, match="generates y"):
        reconstruction_grid(load_model(fitted["cvae3"]), x, y)


def test_loading_another_models_checkpoint_is_a_clear_error(fitted):
    with pytest.raises(CheckpointError, match="holds a cvae1 model, but cvae2 was requested"):
        load_model(fitted["cvae1"], expected="cvae2")
    with pytest.raises(ValueError, match="checkpoint holds a cvae1 model, but a cvae2 model was configured"):
        CVAE2.load_from_checkpoint(fitted["cvae1"] / "checkpoints" / "best.ckpt")
    with pytest.raises(ValueError, match=r"posterior_net.to_params.weight has shape \(32, 256\) in the checkpoint but \(16, 256\) here"):
        CVAE1.load_from_checkpoint(fitted["cvae1"] / "checkpoints" / "best.ckpt", latent_dim=8)


def test_missing_and_corrupt_checkpoints_are_clear_errors(tmp_path, fitted):
    with pytest.raises(CheckpointError, match="no checkpoint in .*checkpoints/best.ckpt or last.ckpt"):
        load_model(tmp_path)
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes((fitted["cvae1"] / "checkpoints" / "best.ckpt").read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_model(broken)


@pytest.mark.slow
def test_command_line_tools_end_to_end(fitted, tmp_path):
    run = fitted["cvae1"]
    done = subprocess.run(["cvaezoo-classify", str(run), "--out", str(tmp_path / "c")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.4 and (tmp_path / "c" / "predictions.csv").exists()
    done = subprocess.run(["cvaezoo-generate", str(run), "--labels", "2", "5", "-n", "3", "--out", str(tmp_path / "g")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert {"samples.png", "samples.npz", "analogy.png", "reconstruction.png", "interpolation.png"} <= {
        p.name for p in (tmp_path / "g").iterdir()}
    done = subprocess.run(["cvaezoo-evaluate", str(run), "--iwae-samples", "5", "--out", str(tmp_path / "e")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    evaluation = json.loads((tmp_path / "e" / "evaluation.json").read_text())
    assert evaluation["test/iwae_k5"] < 0 and "test/accuracy" in evaluation
    done = subprocess.run(["cvaezoo-classify", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 2 and "no checkpoint in" in done.stderr
    done = subprocess.run(["cvaezoo-classify", str(run), "data=digits"], capture_output=True, text=True)
    assert done.returncode == 2 and "shape (1, 8, 8)" in done.stderr


def test_frechet_distance_is_small_between_real_sets_and_sees_blur_and_shuffled_pixels(reference):
    """The sanity checks of the metric itself: held-out real images against other real images score near 0;
    the same images blurred, or with their pixels shuffled, score far worse."""
    data = instantiate(compose_overrides(*SMALL_MNIST, "data.binarize=none", "run_dir=.").data)
    train_x = data.split_tensors("train")[0]  # sorted by class: halves of a random permutation
    order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(0))
    real, other = train_x[order[:500]], train_x[order[500:]]  # 500 and 500 different real digits
    same = frechet_distance(reference, real, other)
    blurred = frechet_distance(reference, real, torch.nn.functional.avg_pool2d(other, 5, stride=1, padding=2))
    generator = torch.Generator().manual_seed(0)
    shuffled = other.flatten(1)[:, torch.randperm(28 * 28, generator=generator)].view_as(other)
    scrambled = frechet_distance(reference, real, shuffled)
    assert frechet_distance(reference, real, real) == pytest.approx(0.0, abs=1e-2 * same + 1e-6)
    assert 0 < same < blurred / 4 and same < scrambled / 4, (same, blurred, scrambled)


def test_precision_sees_broken_images_and_recall_sees_missing_classes(reference):
    """The sanity checks of the precision/recall pair: real images against other real images score high on both;
    images with their pixels shuffled fall out of the real manifold (precision) and cover none of it (recall);
    samples of half the classes lose recall, not precision. Blur, in a classifier's feature space, keeps images
    near their class (precision stays) but narrows them (recall and the Fréchet distance see it)."""
    data = instantiate(compose_overrides(*SMALL_MNIST, "data.binarize=none", "run_dir=.").data)
    train_x, train_y = data.split_tensors("train")
    order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(0))
    real, other, other_y = train_x[order[:500]], train_x[order[500:1000]], train_y[order[500:1000]]
    same = sample_quality(reference, real, other)
    generator = torch.Generator().manual_seed(0)
    shuffled = sample_quality(reference, real, other.flatten(1)[:, torch.randperm(28 * 28, generator=generator)]
                              .view_as(other))
    blurred = sample_quality(reference, real, torch.nn.functional.avg_pool2d(other, 5, stride=1, padding=2))
    low_digits = other[other_y < 5]
    half = sample_quality(reference, real, torch.cat([low_digits, low_digits])[: len(other)])  # as many images
    print({"real": same, "shuffled": shuffled, "blurred": blurred, "half the classes": half})  # shown with -s
    assert same["precision"] > 0.6 and same["recall"] > 0.6, same
    assert shuffled["precision"] < same["precision"] / 2 and shuffled["recall"] < 0.1, (same, shuffled)
    assert half["recall"] < 0.7 * same["recall"] and half["precision"] > 0.8 * same["precision"], (same, half)
    assert blurred["recall"] < 0.7 * same["recall"], (same, blurred)
    assert same["frechet_distance"] < min(half["frechet_distance"], blurred["frechet_distance"]) / 4
    assert same == sample_quality(reference, real, other)
    assert reference_features(reference, other).shape == (len(other), reference.encoder.out_dim)


def accuracies_under_noise(run_dir, grey_x: torch.Tensor, y: torch.Tensor, binarize: str) -> dict[str, float]:
    """Classifier-mode accuracy of a run on grey test digits, clean and under the noise study's three pixel noises
    (experiments/noise: uniform ±0.05 and ±0.1, Gaussian σ = 0.05, clipped to [0, 1]), then binarised as the run was
    trained (``binarize``: a run trained from Python has no Hydra record, from which cvaezoo-classify would read it)."""
    model = load_model(run_dir)
    inputs = {"clean": grey_x, **{name: random_noise(grey_x, kind, size) for name, (kind, size) in PIXEL_NOISES.items()}}
    result = {}
    for name, images in inputs.items():
        torch.manual_seed(0)
        result[name] = float((predict_proba(model, binarize_fixed(images, binarize, seed=0)).argmax(1) == y).float().mean())
    return result


@pytest.mark.slow
def test_the_default_recipe_keeps_bayes_rule_through_pixel_noise_and_the_old_one_does_not(tmp_path):
    """CVAE-1 by the default recipe (binarised digits, Bernoulli with a uniform outlier of weight 0.01 per pixel)
    keeps >= 90 % of its clean accuracy under uniform ±0.05 and Gaussian σ = 0.05 noise and >= 75 % under ±0.1 (the
    targets of #28); the same fit without the outlier (the recipe before #28) does not: a background pixel that
    noise turned on costs each class what its decoder's logit says, without limit. 20 epochs on the 4 000 training
    digits (shorter fits are not yet sure enough of their background to fail: 60 epochs on 1 000 digits hold)."""
    datamodule = instantiate(compose_overrides("data.binarize=none", "run_dir=.").data)
    datamodule.setup()
    grey_x, y = datamodule.splits["test"].tensors
    accuracy = {}
    for name, weight in (("default", "null"), ("without", "0")):
        cfg = compose_overrides("model=cvae1", "trainer.max_epochs=20", f"model.pixel_outlier_weight={weight}",
                                f"run_dir={tmp_path / name}")
        assert cfg.data.binarize == "dynamic"  # the default: noise turns a background pixel on with its grey level
        train(cfg)
        accuracy[name] = accuracies_under_noise(tmp_path / name, grey_x, y, cfg.data.binarize)
    default, without = accuracy["default"], accuracy["without"]
    assert default["uniform_0.05"] >= 0.9 * default["clean"] and default["gaussian_0.05"] >= 0.9 * default["clean"], accuracy
    assert default["uniform_0.1"] >= 0.75 * default["clean"], accuracy
    assert without["uniform_0.1"] < 0.75 * without["clean"], accuracy


@pytest.mark.parametrize("name", ["cvae1", "cvae4"])
def test_analysis_by_synthesis_classifies_without_the_encoder(fitted, test_split, name):
    """Bayes rule over max_z log p(x, z|y) (best of the prior draws, then Adam steps on z) classifies about as
    well as over the encoder's ELBO, and the steps raise the objective above the best draw's."""
    model = load_model(fitted[name], expected=name)
    x, y = test_split
    x, y = x[:100], y[:100]
    torch.manual_seed(0)
    optimised = predict_proba(model, x, method="optimise", samples=50).argmax(1)
    elbo = predict_proba(model, x, method="elbo", samples=10).argmax(1)
    assert (optimised == y).float().mean() > (elbo == y).float().mean() - 0.1 > 0.3
    eps = torch.randn(50, 8, model.latent_dim)
    with torch.no_grad():
        c, prior = model.encode_condition(y[:8]), model.prior(x[:8], model.encode_condition(y[:8]))
        z = prior.rsample(50, eps=eps)
        best_draw = (model.log_likelihood(z, x[:8], c, x[:8]) + prior.log_prob(z)).max(0).values
    stepped = model.optimised_log_joint(x[:8], y[:8], 50, eps=eps)
    assert (stepped >= best_draw - 1e-3).all() and (stepped > best_draw + 1e-2).any()
    x_grad = x[:4].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model.log_predictive(x_grad, method="optimise", samples=10).sum(), x_grad)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0  # attackable through the optimum
    assert all(p.grad is None for p in model.parameters())  # the steps on z leave the weights alone
    model.optimise_steps = 0
    assert torch.allclose(model.optimised_log_joint(x[:8], y[:8], 50, eps=eps), best_draw, atol=1e-4)


def test_classify_takes_the_analysis_by_synthesis_method_on_a_trained_run(fitted, tmp_path):
    from cvaezoo.cli import classify_main

    classify_main([str(fitted["cvae1"]), "--method", "optimise", "--samples", "20", "--out", str(tmp_path)])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.4, metrics
