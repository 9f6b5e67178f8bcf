"""The glue of classifier mode, generation scoring and bound evaluation, checked with numbers known in advance:
stand-in models whose outputs are fixed, so every sum, mean and batch boundary is pinned (fast; no training)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from cvaezoo.errors import UserError
from cvaezoo.inference import (
    attribute_generation_accuracy,
    classification_metrics,
    conditional_generation_accuracy,
    distinct_rows,
    evaluate_bound,
    predict_proba,
    prior_calibration,
    samples_for,
)
from cvaezoo.models import ClassifierMode
from cvaezoo.sample_quality import (
    completion_diversity,
    control_images,
    kernel_distance,
    manifold_precision_recall,
    sample_quality,
)


class StandIn(torch.nn.Module):
    """Answers like a model, from fixed functions of its inputs; records eval()."""

    def __init__(self, target_name: str = "x", y_dim: int = 3, bits: bool = False):
        super().__init__()
        self.target_name, self.y_dim, self.model_name = target_name, y_dim, "stand-in"
        self.likelihood = SimpleNamespace(reports_bits_per_dim=bits)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    has_latent = True

    def classifier_mode(self, method=None, samples=None):
        return ClassifierMode(method or "scaled", samples or 1)

    def predict_proba(self, x, method=None, samples=None):
        return torch.softmax((samples or 1) * x[:, : self.y_dim], dim=1)

    def elbo_terms(self, x, y, samples=1):
        recon, kl = x[:, 0] + y, x[:, 1]
        return SimpleNamespace(recon=recon, kl=kl, elbo=-(recon + kl))

    def iwae_bound(self, x, y, samples):
        return -(x[:, 0] + y) - x[:, 1] + 0.1 * samples

    def conditional_log_likelihood(self, x, y, samples):
        return -x[:, 2] * samples

    def bits_per_dim(self, value):
        return -value / 10.0

    def sample(self, conditions, n):
        """Images whose single pixel is the condition (its index for a multi-hot row), repeated n times."""
        codes = conditions.float() if conditions.dim() == 1 else conditions.argmax(1).float()
        return codes.view(-1, 1, 1, 1, 1).expand(-1, n, 1, 1, 1).clone()


def test_predict_proba_batches_and_forwards_its_arguments():
    model = StandIn().train()
    x = torch.randn(7, 3)
    probs = predict_proba(model, x, samples=2, batch_size=3)
    assert not model.training  # scored in eval mode
    assert torch.allclose(probs, torch.softmax(2.0 * x, dim=1))


def test_classification_metrics_by_hand():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.45, 0.35], [0.05, 0.05, 0.9]])
    labels = torch.tensor([0, 2, 0, 1])
    metrics = classification_metrics(probs, labels, n_bins=2)
    assert metrics["accuracy"] == pytest.approx(0.5)
    assert metrics["nll"] == pytest.approx(-(torch.log(torch.tensor([0.7, 0.6, 0.2, 0.05]))).mean().item(), rel=1e-6)
    # two bins of confidence: [0, 0.5) holds 0.45 (wrong); [0.5, 1] holds 0.7 (right), 0.6 (right), 0.9 (wrong)
    ece = 0.25 * abs(0.0 - 0.45) + 0.75 * abs(2 / 3 - (0.7 + 0.6 + 0.9) / 3)
    assert metrics["ece"] == pytest.approx(ece, abs=1e-6)
    assert metrics["confusion_matrix"] == [[1, 1, 0], [0, 0, 1], [0, 0, 1]]  # rows: true class
    imbalanced = classification_metrics(torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]]),
                                        torch.tensor([0, 0, 0, 1]))
    assert imbalanced["accuracy"] == pytest.approx(0.75)  # over examples (micro), not the mean over classes (0.5)
    underflow = classification_metrics(torch.tensor([[1.0, 0.0]]), torch.tensor([1]))
    assert underflow["nll"] == pytest.approx(-torch.log(torch.tensor(1e-12)).item())  # floored, finite


def test_evaluate_bound_means_every_term_over_unequal_batches():
    x = torch.arange(21, dtype=torch.float).view(7, 3)
    y = torch.arange(7, dtype=torch.float)
    result = evaluate_bound(StandIn(bits=True), x, y, iwae_samples=4, batch_size=3)
    recon, kl = x[:, 0] + y, x[:, 1]
    assert result["recon"] == pytest.approx(recon.mean().item())
    assert result["kl"] == pytest.approx(kl.mean().item())
    assert result["elbo"] == pytest.approx(-(recon + kl).mean().item())
    assert result["iwae_k4"] == pytest.approx((-(recon + kl) + 0.4).mean().item())
    assert result["bpd_elbo"] == pytest.approx((recon + kl).mean().item() / 10)
    assert result["bpd_iwae_k4"] == pytest.approx(-result["iwae_k4"] / 10)
    assert "cnll_s4" not in result
    predictive = evaluate_bound(StandIn(target_name="y"), x, y, iwae_samples=4, batch_size=3)
    assert predictive["cnll_s4"] == pytest.approx((x[:, 2] * 4).mean().item()) and "bpd_elbo" not in predictive


def test_conditional_generation_accuracy_per_class():
    # the reference calls a sample of class c "c" except for class 2, which it calls 0
    reference = SimpleNamespace(device=torch.device("cpu"), classify=lambda s: torch.where(s.flatten() == 2, 0, s.flatten()).long())
    result = conditional_generation_accuracy(StandIn(y_dim=3), reference, n_per_class=4)
    assert result == {"overall": pytest.approx(2 / 3), "per_class": [1.0, 1.0, 0.0]}
    with pytest.raises(UserError, match="needs a model that generates x; stand-in generates y"):
        conditional_generation_accuracy(StandIn(target_name="y"), reference)


def test_attribute_generation_accuracy_counts_groups_and_exact_matches():
    # two groups: a one-of-3 and a binary attribute; the reference gets the first group right and always says 0
    combinations = torch.tensor([[1.0, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 1]])

    def classify(samples):
        first = torch.nn.functional.one_hot(samples.flatten().long(), 3).float()
        return torch.cat([first, torch.zeros(len(samples), 1)], dim=1)

    reference = SimpleNamespace(device=torch.device("cpu"), groups=[3, 1], classify=classify)
    result = attribute_generation_accuracy(StandIn(), reference, combinations, n_per_combination=5)
    assert result == {"attribute_accuracy": pytest.approx(4 / 6), "group_accuracy": [1.0, pytest.approx(1 / 3)],
                      "exact_match": pytest.approx(1 / 3), "combinations": 3}


def test_distinct_rows_are_unique_and_sorted():
    rows = torch.tensor([[1.0, 0], [0, 1], [1, 0], [0, 0]])
    assert distinct_rows(rows).tolist() == [[0, 0], [0, 1], [1, 0]]


class Completer(StandIn):
    """Predicts y: draw s of input i is the 2-pixel vector [i, s] (so the draws differ in their second pixel)."""

    def __init__(self):
        super().__init__(target_name="y")

    def sample(self, x, n, temperature=1.0):
        index = x[:, 0].float()
        return torch.stack([index[:, None].expand(-1, n), temperature * torch.arange(n).float().expand(len(x), n)], dim=-1)


class FeaturesAreImages(torch.nn.Module):
    """A reference classifier whose penultimate features are its (two-pixel) images themselves."""

    device = torch.device("cpu")

    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Flatten()
        self.encoder.out_dim = 2


def test_completion_diversity_by_hand():
    """Truth of input i: [i, 1]; draws [i, 0], [i, 1], [i, 2]: squared errors (0 + 1)/2, 0, 1/2; RMS distances
    between draws |s - t| / sqrt(2) over the 6 ordered pairs; the reference reads the class off the second pixel."""
    x = torch.arange(105.0)[:, None]  # two batches of 100 and 5
    y = torch.stack([torch.arange(105.0), torch.ones(105)], dim=1)

    class Reference(FeaturesAreImages):  # reads the class off the second pixel; unsure (p = 0.4) for odd inputs

        def classify(self, images):
            return images[:, 1].long() % 2

        def forward(self, inputs):
            top = torch.where(inputs[:, 0] % 2 == 1, 0.4, 0.9)
            return torch.stack([top, (1 - top) / 2, (1 - top) / 2], dim=1).log()

    reference = Reference()
    scores = completion_diversity(Completer(), x, y, n_samples=3, complete=lambda xb, draws: draws, reference=reference)
    assert scores["best_of_s_error"] == 0.0 and scores["mean_error"] == pytest.approx(1 / 3)
    assert scores["pairwise_distance"] == pytest.approx((4 * 1 + 2 * 2) / 6 / 2**0.5)
    assert scores["distinct_classes"] == 2.0  # classes 0, 1, 0
    assert scores["ambiguous_inputs"] == 52 and scores["distinct_classes_ambiguous"] == 2.0
    # the first draws [i, 0] against the truths [i, 1]: equal spreads, means 1 apart; each draw lies 1 from its
    # truth, inside the real points' third-neighbour radius (2), and the other way round
    assert scores["frechet_distance"] == pytest.approx(1.0, abs=1e-3)
    assert scores["precision"] == 1.0 and scores["recall"] == 1.0
    # the floor: the completed images of other examples (here truths [i, 3] of inputs i + 200) against the truths
    other = (x + 200, torch.stack([torch.arange(105.0) + 200, 3 * torch.ones(105)], dim=1))
    floored = completion_diversity(Completer(), x, y, n_samples=3, complete=lambda xb, draws: draws, reference=reference,
                                   control=other)
    assert floored["frechet_distance_floor"] == pytest.approx(sample_quality(reference, y, other[1])["frechet_distance"])
    assert floored["frechet_distance"] == scores["frechet_distance"] and "frechet_distance_floor" not in scores
    wider = completion_diversity(Completer(), x, y, n_samples=3, temperature=2.0)  # draws [i, 0], [i, 2], [i, 4]
    assert wider["pairwise_distance"] == pytest.approx(2 * scores["pairwise_distance"])
    assert len(scores["per_input"]["mean_error"]) == 105 and "distinct_classes" not in completion_diversity(
        Completer(), x, y, n_samples=3)
    with pytest.raises(UserError, match="predicts y and n_samples >= 2"):
        completion_diversity(StandIn(), x, y)


def test_prior_calibration_by_hand():
    """q = N(2, 1) and p = N(0, 4) in dimension 0: E_q[z^2] / 4 = (4 + 1) / 4; equal Gaussians in dimension 1: 1."""
    from cvaezoo.distributions import DiagonalGaussian

    model = StandIn(target_name="y")
    model.latent_dim = 2

    def posterior_and_prior(x, y):
        n = len(x)
        q = DiagonalGaussian(torch.tensor([2.0, 0.5]).expand(n, 2), torch.zeros(n, 2))
        p = DiagonalGaussian(torch.tensor([0.0, 0.5]).expand(n, 2), torch.tensor([2 * 0.6931472, 0.0]).expand(n, 2))
        return None, q, p

    model.posterior_and_prior = posterior_and_prior
    assert torch.allclose(prior_calibration(model, torch.zeros(700, 1), torch.zeros(700)), torch.tensor([1.25, 1.0]))


def test_manifold_precision_and_recall_by_hand():
    """k = 1 on a line. Real points 0, 1, 2, 3, 10 reach their nearest neighbour at radii 1, 1, 1, 1, 7; the
    generated points 0.5, 0.7, 9, 21 at 0.2, 0.2, 8.3, 12. Precision: 0.5, 0.7 (within 1 of 0 or 1) and 9
    (within 7 of 10) lie in the real manifold, 21 does not: 3/4. Recall: 1, 2, 3 (within 8.3 of 9) and 10 lie in
    the generated manifold, 0 does not (0.5 from 0.5 > 0.2, 9 from 9 > 8.3, 21 from 21 > 12): 4/5."""
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0], [10.0]])
    generated = torch.tensor([[0.5], [0.7], [9.0], [21.0]])
    assert manifold_precision_recall(real, generated, k=1) == {"precision": 0.75, "recall": 0.8}
    assert manifold_precision_recall(real, real, k=1) == {"precision": 1.0, "recall": 1.0}
    # k = 3 widens every ball (real radii 3, 2, 2, 3, 9; generated 20.5, 20.3, 12, 20.5): 21 stays out, 0 is covered
    assert manifold_precision_recall(real, generated, k=3) == {"precision": 0.75, "recall": 1.0}
    assert manifold_precision_recall(real, generated) == manifold_precision_recall(real, generated, k=3)  # default
    # a ball includes its boundary: 19 lies exactly 9 (the radius of 10 at k = 3) from 10
    assert manifold_precision_recall(real, torch.tensor([[19.0], [0.5], [0.7], [9.0]]), k=3)["precision"] == 1.0
    with pytest.raises(UserError, match="need more than 3 images per set, got 5 real and 3 generated"):
        manifold_precision_recall(real, generated[:3], k=3)


def test_samples_come_in_condition_order_about_2000_at_a_time():
    """samples_for yields (conditions, their n samples each flattened to (len * n, C, H, W)), in order, with at
    most max(1, 2000 // n) conditions per part."""

    class Sampler(torch.nn.Module):
        device = torch.device("cpu")

        def sample(self, conditions, n):  # sample j of condition c: an image filled with 10 c + j
            values = 10 * conditions[:, None].float() + torch.arange(n).float()
            return values[..., None, None, None].expand(-1, -1, 1, 2, 2)

    parts = list(samples_for(Sampler(), torch.arange(700), 3))
    assert [len(part) for part, _ in parts] == [666, 34]
    samples = torch.cat([s for _, s in parts])
    assert samples.shape == (2100, 1, 2, 2)
    assert torch.equal(samples[:, 0, 0, 0], (10 * torch.arange(700)[:, None] + torch.arange(3)).flatten().float())
    assert [len(part) for part, _ in samples_for(Sampler(), torch.arange(3), 3000)] == [1, 1, 1]


def test_sample_quality_subsamples_each_set_with_a_fixed_generator_beyond_max_points():
    """The kernel distance, precision and recall use at most max_points images of each set: the first max_points of one seeded
    permutation per set (real first); smaller sets are used whole (the default allows 5000)."""

    points = torch.Generator().manual_seed(5)
    real, generated = torch.randn(10, 2, generator=points), 2 * torch.randn(10, 2, generator=points)
    whole = sample_quality(FeaturesAreImages(), real, generated)
    assert {k: whole[k] for k in ("precision", "recall")} == manifold_precision_recall(real, generated)
    generator = torch.Generator().manual_seed(0)
    subsets = [images[torch.randperm(10, generator=generator)[:5]] for images in (real, generated)]
    subsampled = sample_quality(FeaturesAreImages(), real, generated, max_points=5)
    assert {k: subsampled[k] for k in ("precision", "recall")} \
        == manifold_precision_recall(*subsets) != manifold_precision_recall(real, generated)  # 1.0 vs 0.8 precision
    assert subsampled["kernel_distance"] == kernel_distance(*subsets) != whole["kernel_distance"]


def test_kernel_distance_by_hand_and_unbiased_where_the_frechet_distance_is_not():
    """KID between {0, 2} and {1} ... in one dimension with D = 1: k(a, b) = (ab + 1)^3. Real {0, 2}: off-diagonal
    k(0, 2) = 1, mean 1; generated {1, 3}: k(1, 3) = 64; across: k(0,1) = 1, k(0,3) = 1, k(2,1) = 27, k(2,3) = 343,
    mean 93. KID = 1 + 64 - 2 * 93 = -121. Then two sets drawn from one Gaussian: over many draws at 20 vs 30
    points the kernel distance averages to 0, while the Fréchet distance of the same sets stays well above 0."""
    assert kernel_distance(torch.tensor([[0.0], [2.0]]), torch.tensor([[1.0], [3.0]])) == pytest.approx(-121.0)
    generator = torch.Generator().manual_seed(0)
    kernel, frechet = [], []
    for _ in range(200):
        a, b = torch.randn(20, 2, generator=generator), torch.randn(30, 2, generator=generator)
        kernel.append(kernel_distance(a, b))
        frechet.append(sample_quality(FeaturesAreImages(), a, b)["frechet_distance"])
    kernel, frechet = torch.tensor(kernel), torch.tensor(frechet)
    assert abs(kernel.mean()) < 3 * kernel.std() / len(kernel) ** 0.5, (kernel.mean(), kernel.std())
    assert frechet.mean() > 10 * frechet.std() / len(frechet) ** 0.5, (frechet.mean(), frechet.std())
    with pytest.raises(UserError, match="at least 2 images per set"):
        kernel_distance(torch.zeros(1, 2), torch.zeros(5, 2))


def test_the_floor_is_the_same_scores_of_other_real_images_in_place_of_the_samples():
    """sample_quality with a control set adds the control's scores against the real set under the floor names;
    a control of another size is refused (a floor at other sizes is not the samples' floor)."""
    generator = torch.Generator().manual_seed(1)
    real, generated, control = (torch.randn(40, 2, generator=generator) for _ in range(3))
    generated = generated * 3
    scores = sample_quality(FeaturesAreImages(), real, generated, control)
    alone = sample_quality(FeaturesAreImages(), real, control)
    assert {name: scores[name] for name in ("frechet_distance_floor", "kernel_distance_floor", "precision_ceiling",
                                           "recall_ceiling")} == {
        "frechet_distance_floor": alone["frechet_distance"], "kernel_distance_floor": alone["kernel_distance"],
        "precision_ceiling": alone["precision"], "recall_ceiling": alone["recall"]}
    assert scores["frechet_distance"] > scores["frechet_distance_floor"]  # three times the spread
    assert {k: scores[k] for k in alone} == sample_quality(FeaturesAreImages(), real, generated)
    with pytest.raises(UserError, match="as many control images as generated ones, got 39 and 40"):
        sample_quality(FeaturesAreImages(), real, generated, control[:39])


def test_control_images_are_the_first_n_of_each_condition_in_order():
    x = torch.arange(12.0)[:, None]
    labels = torch.tensor([2, 0, 1, 0, 2, 1, 0, 1, 2, 0, 1, 2])
    assert control_images(x, labels, torch.tensor([0, 1, 2]), 2)[:, 0].tolist() == [1, 3, 2, 5, 0, 4]
    attributes = torch.tensor([[1, 0], [0, 1], [1, 0], [1, 1]])
    assert control_images(x[:4], attributes, torch.tensor([[1, 0], [1, 1]]), 1)[:, 0].tolist() == [0, 3]
    with pytest.raises(UserError, match="needs 5 other real images of each condition; 3 of 3 have fewer"):
        control_images(x, labels, torch.tensor([0, 1, 2]), 5)
