"""A new model is one class and one registry line: defined here, it trains, classifies, generates and is
evaluated through the same tools as the zoo, without touching any other file."""

import json

import pytest
import torch
from conftest import SMALL_MNIST
from torch import Tensor, nn

from cvaezoo.cli import classify_main, evaluate_main, generate_main
from cvaezoo.distributions import DiagonalGaussian
from cvaezoo.models import MODELS, ConditionalVAE
from cvaezoo.train import train


class ClassMeans(ConditionalVAE):
    """q(z|x,y), p(z|y) = N(mu_y, I) with one learned mean per class, p(x|z): the decoder never sees y."""

    decoder_sees_condition = False

    def build_networks(self) -> None:
        self.class_means = nn.Linear(self.y_dim, self.latent_dim, bias=False)
        nn.init.normal_(self.class_means.weight, std=3.0)  # classes start apart in z
        self.decoder_net = self.decoder(self.latent_dim, self.x_shape)

    def prior(self, x: Tensor | None, c: Tensor) -> DiagonalGaussian:
        mean = self.class_means(c)
        return DiagonalGaussian(mean, torch.zeros_like(mean))

    def likelihood_params(self, z: Tensor, x: Tensor | None, c: Tensor | None) -> Tensor:
        return self.decoder_net(z)


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(MODELS, "classmeans", ClassMeans)  # what register_model(ClassMeans) does, undone afterwards


def test_a_model_defined_in_a_test_file_goes_through_every_tool(registered, compose_config, tmp_path, capsys):
    metrics = train(compose_config(f"model._target_={__name__}.ClassMeans", *SMALL_MNIST, "trainer.max_epochs=8", "~logger"))
    assert metrics["test/elbo"] < 0 and json.loads((tmp_path / "results.json").read_text())["model"] == "classmeans"

    classify_main([str(tmp_path), *SMALL_MNIST, "--out", str(tmp_path / "classify")])
    classified = json.loads((tmp_path / "classify" / "metrics.json").read_text())
    assert classified["model"] == "classmeans" and classified["method"] == "elbo"
    assert classified["accuracy"] > 0.5  # Bayes rule over its bound (about 0.73 here), chance 0.1

    generate_main([str(tmp_path), *SMALL_MNIST, "--labels", "1", "7", "-n", "3", "--out", str(tmp_path / "generate")])
    made = {p.name for p in (tmp_path / "generate").iterdir()}
    # its declared capabilities decide the grids: no analogy grid, since its decoder never sees y
    assert {"samples.png", "reconstruction.png", "interpolation.png"} <= made and "analogy.png" not in made

    evaluate_main([str(tmp_path), *SMALL_MNIST, "--iwae-samples", "5", "--out", str(tmp_path / "evaluate")])
    evaluation = json.loads((tmp_path / "evaluate" / "evaluation.json").read_text())
    assert evaluation["test/iwae_k5"] < 0 and evaluation["test/accuracy"] > 0.5
