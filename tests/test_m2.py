"""M2: the unlabelled bound, semi-supervised data without label leaks, and a semi-supervised fit."""

import csv

import pytest
import torch
from conftest import SMALL_MNIST

from cvaezoo.data import MNIST5k, TensorDataModule
from cvaezoo.models import M2
from cvaezoo.models.m2 import marginal_bound
from cvaezoo.train import train


def tiny_m2(**kwargs) -> M2:
    return M2(x_shape=(1, 4, 4), y_dim=3, net={"hidden": [16]}, latent_dim=2, **kwargs).double()


def test_batched_unlabelled_bound_equals_the_explicit_sum_over_classes():
    model = tiny_m2(class_prior=[0.2, 0.3, 0.5])
    x = torch.bernoulli(torch.full((5, 1, 4, 4), 0.4, dtype=torch.double))
    torch.manual_seed(1)
    batched = model.unlabelled_bound(x)
    torch.manual_seed(1)
    eps = torch.randn(1, 1, 5, 2, dtype=torch.double)[:, 0]
    log_q = model.classifier_log_probs(x)
    explicit = torch.zeros(5, dtype=torch.double)
    for label in range(3):
        bound = model.elbo_terms(x, torch.full((5,), label), eps=eps).elbo + model.log_class_prior[label]
        explicit += log_q[:, label].exp() * (bound - log_q[:, label])
    assert torch.allclose(batched, explicit, atol=1e-10)


def test_unlabelled_bound_is_below_logsumexp_with_equality_at_the_posterior():
    bounds = torch.randn(6, 4, dtype=torch.double) * 5
    best = torch.logsumexp(bounds, dim=-1)
    for _ in range(20):
        log_q = torch.log_softmax(torch.randn(6, 4, dtype=torch.double) * 3, dim=-1)
        assert (marginal_bound(bounds, log_q) <= best + 1e-12).all()
    assert torch.allclose(marginal_bound(bounds, torch.log_softmax(bounds, dim=-1)), best, atol=1e-12)


def test_labels_per_class_keeps_exactly_n_labels_and_hides_the_rest():
    dm = MNIST5k(split=(1000, 200, 200), labels_per_class=7)
    labelled, unlabelled = dm.semi_supervised_split()
    x_l, y_l = labelled.tensors
    x_u, y_u = unlabelled.tensors
    assert len(y_l) == 70 and torch.bincount(y_l).tolist() == [7] * 10
    assert len(y_u) == 930 and (y_u == -1).all()  # no label of the unlabelled part is visible
    train_images = dm.splits["train"].tensors[0]
    assert len(x_l) + len(x_u) == len(train_images)
    labelled_images = {row.numpy().tobytes() for row in x_l.flatten(1)}
    assert not any(row.numpy().tobytes() in labelled_images for row in x_u.flatten(1))  # disjoint
    batch, _, _ = next(iter(dm.train_dataloader()))  # CombinedLoader yields (batch, index, loader index)
    assert set(batch) == {"labelled", "unlabelled"} and (batch["unlabelled"][1] == -1).all()
    assert len(batch["labelled"][0]) == 32
    again_l, _ = MNIST5k(split=(1000, 200, 200), labels_per_class=7).semi_supervised_split()
    assert torch.equal(again_l.tensors[1], y_l) and torch.equal(again_l.tensors[0], x_l)  # seeded
    with pytest.raises(ValueError, match="labels_per_class=500 but class 0 has 100"):
        MNIST5k(split=(1000, 200, 200), labels_per_class=500).semi_supervised_split()


def test_labelled_and_unlabelled_halves_use_the_same_kl_weight_and_sample_count():
    """At step 0 of a KL warm-up the KL weight is 0 for both halves; both take model.n_samples draws."""
    model = tiny_m2(kl_warmup_steps=10, n_samples=3, beta=0.5, class_prior=[0.2, 0.3, 0.5])
    assert model.kl_weight() == 0.0
    x_l, y_l = torch.bernoulli(torch.full((4, 1, 4, 4), 0.4, dtype=torch.double)), torch.tensor([0, 1, 2, 1])
    x_u = torch.bernoulli(torch.full((5, 1, 4, 4), 0.6, dtype=torch.double))
    torch.manual_seed(2)
    loss = model.training_step({"labelled": (x_l, y_l), "unlabelled": (x_u, torch.full((5,), -1))}, 0)
    torch.manual_seed(2)
    labelled = model.elbo_terms(x_l, y_l)  # 3 draws
    eps = torch.randn(3, 1, 5, 2, dtype=torch.double)[:, 0]  # the noise class_bounds draws, shared by the classes
    log_q = model.classifier_log_probs(x_u)
    unlabelled = torch.zeros(5, dtype=torch.double)
    for label in range(3):
        recon = model.elbo_terms(x_u, torch.full((5,), label), samples=3, eps=eps).recon  # KL weight 0: no KL
        unlabelled += log_q[:, label].exp() * (-recon + model.log_class_prior[label] - log_q[:, label])
    cross_entropy = torch.nn.functional.nll_loss(model.classifier_log_probs(x_l), y_l)
    expected = labelled.recon.mean() + 100.0 * cross_entropy - unlabelled.mean()
    assert torch.allclose(loss, expected, atol=1e-10)


class _Imbalanced(TensorDataModule):
    num_classes = 3

    def load(self):
        labels = torch.tensor([0] * 60 + [1] * 25 + [2] * 15)
        return torch.rand(100, 1, 2, 2), labels


def test_class_prior_comes_from_the_labelled_examples_only():
    assert _Imbalanced(split=(80, 10, 10)).class_prior() == pytest.approx([0.6, 0.25, 0.15])
    # 4 labels of each class are visible; the imbalance of the hidden rest must not reach p(y)
    assert _Imbalanced(split=(80, 10, 10), labels_per_class=4).class_prior() == pytest.approx([1 / 3] * 3)


def test_semi_supervised_fit_uses_unlabelled_data_and_classifies_with_q(compose_config, tmp_path):
    metrics = train(compose_config("model=m2", *SMALL_MNIST, "data.labels_per_class=10", "trainer.max_epochs=2"))
    assert metrics["test/accuracy"] > 0.3 and metrics["test/elbo"] < 0  # chance 0.1; about 0.5 after 2 epochs
    with open(tmp_path / "metrics.csv") as f:
        logged = {k for row in csv.DictReader(f) for k, v in row.items() if v}
    # M2's own terms go through the same accumulators as the bound's (reduced over DDP ranks alike)
    assert {"train/classifier_nll", "train/accuracy", "train/unlabelled_bound", "val/accuracy", "val/classifier_nll"} <= logged
    model = M2(x_shape=(1, 28, 28), net={"hidden": [32]}).eval()
    x = torch.rand(4, 1, 28, 28)
    assert torch.allclose(model.predict_proba(x), model.classifier_log_probs(x).exp())


def test_other_models_train_on_the_labelled_part_only(compose_config):
    metrics = train(compose_config("model=cvae2", *SMALL_MNIST, "data.labels_per_class=3", "trainer.max_epochs=1", "~logger"))
    assert metrics["test/elbo"] < 0
