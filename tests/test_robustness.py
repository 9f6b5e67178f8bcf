"""Attacks through classifier mode, the scores that flag unusual inputs, and the out-of-distribution sets."""

import gzip
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import write_fake_idx_dir

from cvaezoo.data import ood
from cvaezoo.data.download import sha256_of
from cvaezoo.data.ood import ood_sets
from cvaezoo.errors import UserError
from cvaezoo.models import MODELS
from cvaezoo.robustness import (
    _BestAgainstDetector,
    auroc,
    class_scores,
    class_thresholds,
    classifier_loss,
    detection_scores,
    fgsm,
    fixed_noise,
    kl_from_class_softmax,
    kl_margin,
    latent_descent,
    log_px_margin,
    logit_matching_loss,
    margin,
    max_prob_margin,
    mean_class_softmax,
    mim,
    orthogonal_pgd,
    pgd,
    pixel_budget_pgd,
    region_pgd,
    rejected,
    rejection_threshold,
    scores_and_predictions,
    spsa,
    spsa_gradient,
    with_detector_hinge,
)

SMALL_NET = {"kind": "mlp", "hidden": [32, 16]}
#: every registered model with a classifier mode over class labels
CLASSIFIERS = [name for name, cls in MODELS.items() if cls.classifies]


def linear_loss(weights: torch.Tensor):
    """Cross-entropy of a linear classifier on flattened x: a smooth loss with a known gradient."""
    return lambda x, y: F.cross_entropy(x.flatten(1) @ weights, y, reduction="none")


@pytest.fixture
def linear():
    torch.manual_seed(0)
    weights = torch.randn(16, 3)
    x = torch.rand(8, 1, 4, 4)
    x[0, 0, 0] = 0.0  # pixels at both ends of the range: the attack must not leave [0, 1]
    x[1, 0, 0] = 1.0
    return linear_loss(weights), weights, x, torch.arange(8) % 3


def test_fgsm_moves_each_pixel_by_eps_along_the_sign_of_the_gradient(linear):
    loss, weights, _, y = linear
    x = torch.full((8, 1, 4, 4), 0.5)  # inside the range: nothing is clipped
    adv = fgsm(loss, x, y, eps=0.1)
    probs = torch.softmax(x.flatten(1) @ weights, -1)
    grad = (probs - F.one_hot(y, 3)) @ weights.T  # d CE / dx of a linear classifier
    assert torch.equal((adv - x).flatten(1).sign(), grad.sign())
    assert torch.allclose((adv - x).abs(), torch.full_like(x, 0.1))
    assert (loss(adv, y) > loss(x, y)).all()


@pytest.mark.parametrize("attack", [fgsm, pgd, mim, spsa])
def test_attacks_stay_inside_the_eps_ball_and_the_pixel_range(linear, attack):
    loss, _, x, y = linear
    adv = attack(loss, x, y, eps=0.3)
    assert (adv - x).abs().max() <= 0.3 + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    assert torch.equal(attack(loss, x, y, eps=0.0), x)


def test_pgd_finds_a_higher_loss_than_one_step_and_the_clean_input(linear):
    loss, _, x, y = linear
    clean, one_step, projected = loss(x, y), loss(fgsm(loss, x, y, 0.1), y), loss(pgd(loss, x, y, 0.1, steps=20), y)
    assert (projected >= clean).all() and projected.mean() > one_step.mean() > clean.mean()


def against_art(make_attack):
    """A small network, 64 inputs, and the inputs attacked by the Adversarial Robustness Toolbox's attack that
    ``make_attack(classifier)`` builds: (our loss on the network, x, y, their adversarial x)."""
    import numpy as np
    from art.estimators.classification import PyTorchClassifier

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 3))
    x, y = torch.rand(64, 1, 4, 4), torch.arange(64) % 3
    classifier = PyTorchClassifier(model=net, loss=torch.nn.CrossEntropyLoss(), input_shape=(1, 4, 4), nb_classes=3,
                                   clip_values=(0.0, 1.0))
    theirs = torch.from_numpy(make_attack(classifier).generate(x.numpy(), y=np.eye(3)[y.numpy()])).float()

    def loss(inputs, labels):
        return F.cross_entropy(net(inputs), labels, reduction="none")

    return loss, x, y, theirs


def test_pgd_reaches_the_loss_of_a_maintained_implementation():
    """The Adversarial Robustness Toolbox's PGD (same eps, step and steps, one random start) on a small network:
    ours finds at least its loss (they agree to about 1e-6 here)."""
    import numpy as np
    from art.attacks.evasion import ProjectedGradientDescent

    loss, x, y, theirs = against_art(lambda classifier: ProjectedGradientDescent(
        classifier, norm=np.inf, eps=0.1, eps_step=0.0125, max_iter=20, num_random_init=1, verbose=False))
    ours = pgd(loss, x, y, eps=0.1, steps=20, step_size=0.0125)
    assert loss(ours, y).mean() >= loss(theirs, y).mean() - 1e-4 > loss(x, y).mean() + 0.05


def test_pgd_keeps_each_examples_highest_loss_iterate():
    """A loss that rises for the first steps and then falls: the best iterate, not the last, comes back."""
    x, y = torch.full((1, 1, 1, 1), 0.5), torch.zeros(1, dtype=torch.long)

    def bump(inputs, _):  # maximal at 0.55, so later steps overshoot
        return -((inputs.flatten(1) - 0.55) ** 2).sum(1)

    adv = pgd(bump, x, y, eps=0.3, steps=10, step_size=0.02, generator=torch.Generator().manual_seed(1))
    assert float(adv) == pytest.approx(0.55, abs=0.011)


def visited_points(attack, **kwargs) -> list[float]:
    """The iterates an attack scores on a one-pixel loss that peaks at 0.55, starting from 0.5."""
    seen = []

    def bump(inputs, _):
        seen.append(round(float(inputs.detach()), 4))
        return -((inputs.flatten(1) - 0.55) ** 2).sum(1)

    attack(bump, torch.full((1, 1, 1, 1), 0.5), torch.zeros(1, dtype=torch.long), eps=0.3, **kwargs)
    return seen  # each step scores the iterate as it takes its gradient: one point per step


def test_mim_accumulates_momentum_from_the_clean_input():
    """From x itself (no random start), the momentum of three rising steps carries MIM three steps past the
    peak before it turns; without momentum (decay 0) it turns at once and oscillates around the peak."""
    with_momentum = visited_points(mim, steps=8, step_size=0.02)
    assert with_momentum == [0.5, 0.52, 0.54, 0.56, 0.58, 0.6, 0.6, 0.58, 0.56]
    assert visited_points(mim, steps=6, step_size=0.02, decay=0.0) == [0.5, 0.52, 0.54, 0.56, 0.54, 0.56, 0.54]


def test_mim_reaches_the_loss_of_a_maintained_implementation():
    """The Adversarial Robustness Toolbox's momentum iterative method (same eps, step, steps and decay; its L1
    normalisation differs from Li et al.'s mean by a constant factor, which no signed step sees)."""
    import numpy as np
    from art.attacks.evasion import MomentumIterativeMethod

    loss, x, y, theirs = against_art(lambda classifier: MomentumIterativeMethod(
        classifier, norm=np.inf, eps=0.1, eps_step=0.01, decay=1.0, max_iter=30, verbose=False))
    ours = mim(loss, x, y, eps=0.1, steps=30, step_size=0.01)
    assert loss(ours, y).mean() >= loss(theirs, y).mean() - 1e-4 > loss(x, y).mean() + 0.05


def test_restarts_find_the_higher_of_two_peaks_that_one_start_misses():
    """A one-pixel loss with a low peak at 0.3 and a high one at 0.7, attacked from 0.5 with eps 0.5: from one
    random start some examples climb the low peak; with twelve starts every example reaches the high one."""
    x, y = torch.full((20, 1, 1, 1), 0.5), torch.zeros(20, dtype=torch.long)

    def two_peaks(inputs, _):
        v = inputs.flatten(1)[:, 0]
        return torch.maximum(1 - 50 * (v - 0.3) ** 2, 2 - 50 * (v - 0.7) ** 2)

    def found(restarts):
        return pgd(two_peaks, x, y, eps=0.5, steps=30, step_size=0.01, restarts=restarts,
                   generator=torch.Generator().manual_seed(0)).flatten()

    assert ((found(1) - 0.3).abs() < 0.02).any()
    assert ((found(12) - 0.7).abs() < 0.02).all()
    with pytest.raises(UserError, match="at least one start"):
        found(0)


def test_the_margin_loss_is_positive_exactly_when_the_example_is_misclassified():
    log_probs = torch.tensor([[0.7, 0.2, 0.1], [0.7, 0.2, 0.1]]).log()
    assert margin(log_probs, torch.tensor([0, 1])).tolist() == pytest.approx([math.log(0.2 / 0.7), math.log(0.7 / 0.2)])
    model = small_model("cvae1")
    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    with fixed_noise(7, x.device):
        expected = margin(model.log_predictive(x, samples=1), y)
    assert torch.allclose(classifier_loss(model, samples=1, seed=7, objective="margin")(x, y), expected)
    with pytest.raises(UserError, match="objective must be one of"):
        classifier_loss(model, objective="hinge")


def test_confidence_caps_the_margin_at_kappa():
    model = small_model("cvae1")
    x, y = torch.rand(6, 1, 8, 8), torch.arange(6)
    uncapped = classifier_loss(model, samples=1, seed=7, objective="margin")(x, y)
    kappa = float(uncapped.detach().median())
    capped = classifier_loss(model, samples=1, seed=7, objective="margin", confidence=kappa)(x, y)
    assert torch.equal(capped, uncapped.clamp(max=kappa)) and (capped < uncapped).any()


@pytest.mark.parametrize("name", ["cvae1", "cvae4"])
def test_latent_descent_steps_towards_the_reconstruction_as_the_best_wrong_class(name):
    """One step of latent descent from x: the sign of (reconstruction as the top wrong class - x), times the
    step, clipped; a loss that prefers any move keeps that iterate."""
    torch.manual_seed(0)
    model = small_model(name).eval()
    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    with torch.no_grad(), fixed_noise(3, x.device):
        scores = class_scores(model, x, samples=1)
    wrong = scores.scatter(1, y[:, None], -torch.inf).argmax(1)
    c = model.encode_condition(wrong)
    with torch.no_grad():
        reconstruction = model.decode(model.posterior(x, c).mean, c).view_as(x)
    expected = (x + 0.05 * (reconstruction - x).sign()).clamp(0, 1)

    def moved(inputs, _):
        return (inputs - x).abs().flatten(1).sum(1)

    adv = latent_descent(model, moved, x, y, eps=0.1, steps=1, step_size=0.05, samples=1, seed=3)
    assert torch.allclose(adv, expected)
    far = latent_descent(model, moved, x, y, eps=0.1, steps=10, step_size=0.05, samples=1, seed=3)
    assert (far - x).abs().max() <= 0.1 + 1e-6 and (far - x).abs().max() > 0.09
    with pytest.raises(UserError, match="no class-conditional model of x"):
        latent_descent(small_model("cvae3"), moved, x, y, eps=0.1)


def test_eot_averages_the_loss_over_draws_of_the_models_noise():
    model = small_model("cvae1")
    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    singles = torch.stack([classifier_loss(model, samples=1, seed=7 + k)(x, y) for k in range(4)])
    assert torch.allclose(classifier_loss(model, samples=1, seed=7, eot=4)(x, y), singles.mean(0))
    fresh = classifier_loss(model, samples=1, seed=None, eot=4)
    assert not torch.equal(fresh(x, y), fresh(x, y))
    with pytest.raises(UserError, match="eot must be at least 1"):
        classifier_loss(model, eot=0)


def test_the_detector_hinge_keeps_a_successful_attack_below_the_threshold():
    """A loss that rises with the image's mean and a detector that flags a mean above 0.6: plain PGD takes the
    mean to 0.8, the hinged loss stops at the detector's threshold, still raising the loss."""
    x, y = torch.full((3, 1, 4, 4), 0.5), torch.zeros(3, dtype=torch.long)

    def brightness(inputs, _):
        return inputs.flatten(1).mean(1)

    def detector_margin(inputs):  # score minus threshold: negative (flagged) above 0.6
        return 0.6 - inputs.flatten(1).mean(1)

    hinged = with_detector_hinge(brightness, detector_margin, weight=10.0)
    assert torch.allclose(hinged(torch.full((3, 1, 4, 4), 0.7), y), torch.full((3,), 0.7 - 10 * 0.1))
    plain = pgd(brightness, x, y, eps=0.3, steps=80, step_size=0.01, generator=torch.Generator().manual_seed(0))
    aware = pgd(hinged, x, y, eps=0.3, steps=80, step_size=0.01, generator=torch.Generator().manual_seed(0))
    assert (detector_margin(plain) < -0.19).all()
    assert (detector_margin(aware) > -0.011).all() and (brightness(aware, y) > 0.58).all()


def conflicting_linear_pair():
    """A linear classifier margin (fooled above 0) and a steep linear detector margin (flagged below 0) whose
    gradient overlaps the classifier's: the classifier's direction is also the detector's."""
    torch.manual_seed(0)
    x, y = torch.full((6, 1, 4, 4), 0.5), torch.zeros(6, dtype=torch.long)
    w = torch.randn(6, 16)
    u = w + torch.randn(6, 16)

    def classifier_margin(inputs, _):
        return ((inputs - x).flatten(1) * w).sum(1) - 0.5

    def detector_margin(inputs):
        return 1000 * (0.2 - ((inputs - x).flatten(1) * u).sum(1))

    return classifier_margin, detector_margin, x, y, w


def test_orthogonal_pgd_fools_a_detector_that_the_hinged_sum_does_not():
    """Every example fooled and unflagged by orthogonal PGD; the sum with a hinge (signed steps, the detector
    1 000 times steeper) leaves some examples right."""
    classifier_margin, detector_margin, x, y, _ = conflicting_linear_pair()
    adv = orthogonal_pgd(classifier_margin, detector_margin, x, y, eps=0.1, steps=40)
    assert (classifier_margin(adv, y) > 0).all() and (detector_margin(adv) >= 0).all()
    assert (adv - x).abs().max() <= 0.1 + 1e-6
    hinged = with_detector_hinge(lambda inputs, labels: classifier_margin(inputs, labels).clamp(max=5),
                                 detector_margin, weight=10.0)
    summed = pgd(hinged, x, y, eps=0.1, steps=40, generator=torch.Generator().manual_seed(0))
    assert ((classifier_margin(summed, y) <= 0) | (detector_margin(summed) < 0)).any()


def test_orthogonal_pgds_classifier_steps_keep_the_detectors_margin():
    """From x, whose detector margin is exactly 0 (any move along the detector's gradient flags it), one step:
    the classifier margin rises and the detector margin stays 0, since the step is orthogonal to its gradient."""
    classifier_margin, _, x, y, w = conflicting_linear_pair()
    u = w + torch.randn(6, 16, generator=torch.Generator().manual_seed(1))

    def on_the_threshold(inputs):
        return -1000 * ((inputs - x).flatten(1) * u).sum(1)

    one = orthogonal_pgd(classifier_margin, on_the_threshold, x, y, eps=0.3, steps=1, step_size=0.01)
    assert (classifier_margin(one, y) > classifier_margin(x, y) + 0.01).all()
    assert torch.allclose(on_the_threshold(one), torch.zeros(6), atol=1e-3)


def test_orthogonal_pgd_keeps_a_success_inside_its_buffer_over_a_flagged_one_past_it():
    """Two starts, barely moved (steps of 1e-6): one fooled by 0.05 and unflagged, one fooled by 1.5 and flagged;
    with the buffer at 1, the attack returns the unflagged success, not the flagged image of higher margin."""
    x, y = torch.full((1, 1, 1, 2), 0.5), torch.zeros(1, dtype=torch.long)

    def classifier_margin(inputs, _):
        return 10 * (inputs - x).flatten(1)[:, 0] - 0.5

    def detector_margin(inputs):
        return 0.06 - (inputs - x).flatten(1).sum(1)

    inside, past = (x + torch.tensor([shift, 0.0]).view_as(x) for shift in (0.055, 0.2))
    assert classifier_margin(inside, y) > 0 and detector_margin(inside) > 0
    assert classifier_margin(past, y) > 1 and detector_margin(past) < 0
    adv = orthogonal_pgd(classifier_margin, detector_margin, x, y, eps=0.3, steps=1, step_size=1e-6,
                         starts=(past, inside), min_loss=1.0)
    assert torch.allclose(adv, inside, atol=1e-5)


def test_orthogonal_pgds_detector_steps_keep_the_classifiers_loss():
    """From a fooled start the detector flags, one step: the detector's margin rises and the (linear)
    classifier margin does not move, since the step is orthogonal to its gradient."""
    classifier_margin, detector_margin, x, y, w = conflicting_linear_pair()
    start = x + 0.1 * w.sign().view_as(x)
    assert (classifier_margin(start, y) > 0).all() and (detector_margin(start) < 0).all()
    one = orthogonal_pgd(classifier_margin, detector_margin, x, y, eps=0.3, steps=1, step_size=0.01, starts=(start,))
    assert torch.allclose(classifier_margin(one, y), classifier_margin(start, y), atol=1e-5)
    assert (detector_margin(one) > detector_margin(start) + 50).all()
    with pytest.raises(UserError, match="norm must be l2 or linf"):
        orthogonal_pgd(classifier_margin, detector_margin, x, y, eps=0.3, norm="l1")


def test_the_best_image_against_a_detector_is_a_success_past_the_buffer_then_the_detectors_margin():
    """Offered in turn: a flagged success of large margin, an unflagged success inside the buffer (detector margin
    3), one past it (detector margin 1), and one inside it again (margin 5): the success past the buffer is kept."""
    x = torch.zeros(1, 1, 1, 1)
    best = _BestAgainstDetector(x, min_loss=1.0)
    for image, loss, detector in ((1, 9.0, -1.0), (2, 0.5, 3.0), (3, 1.5, 1.0), (4, 0.5, 5.0), (5, -1.0, 9.0)):
        best.offer(torch.full_like(x, image), torch.tensor([loss]), torch.tensor([detector]))
    assert best.images.item() == 3


def pixel_counting_pair():
    """Two 4 x 4 images, one stroke pixel each (0.5, the rest black); a linear classifier margin that needs the
    stroke and four chosen black pixels moved by 0.1 to pass 0 (weight 1 on those, 0.01 on the other black pixels
    but four, whose weight -5 points below black: the largest gradients, which buy nothing), and a detector that
    charges per moved black pixel and flags past four: a budget of pixels."""
    x = torch.zeros(2, 1, 4, 4)
    x.view(2, 16)[0, 0], x.view(2, 16)[1, 15] = 0.5, 0.5
    weights = torch.full((2, 16), 0.01)
    weights[0, [0, 1, 2, 3, 4]], weights[1, [15, 14, 9, 6, 3]] = 1.0, 1.0
    weights[0, [5, 6, 7, 8]], weights[1, [0, 1, 2, 4]] = -5.0, -5.0
    black = x == 0

    def classifier_margin(inputs, _):
        return ((inputs - x).flatten(1) * weights).sum(1) - 0.45

    def detector_margin(inputs):
        return 4.5 - (((inputs - x).abs() > 1e-3) & black).flatten(1).sum(1).float()

    return classifier_margin, detector_margin, x, torch.zeros(2, dtype=torch.long), ~black


def test_pixel_budget_pgd_spends_a_budget_of_pixels_where_the_loss_is():
    """The strokes alone cannot fool the classifier and PGD on every pixel is flagged; the strokes plus the four
    black pixels that buy the most margin fool it unflagged, found by bisection within six pixels, and the
    largest gradients (pointing below black) would not."""
    classifier_margin, detector_margin, x, y, strokes = pixel_counting_pair()
    generator = torch.Generator().manual_seed(0)
    on_strokes = region_pgd(classifier_margin, x, y, eps=0.1, region=strokes, steps=10, generator=generator)
    assert (classifier_margin(on_strokes, y) < 0).all() and torch.equal(on_strokes[~strokes], x[~strokes])
    everywhere = pgd(classifier_margin, x, y, eps=0.1, steps=10, generator=generator)
    assert (classifier_margin(everywhere, y) > 0).all() and (detector_margin(everywhere) < 0).all()
    adv = pixel_budget_pgd(classifier_margin, detector_margin, x, y, eps=0.1, region=strokes, max_pixels=6,
                           steps=10, generator=generator)
    assert (classifier_margin(adv, y) > 0).all() and (detector_margin(adv) >= 0).all()
    assert (adv - x).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0
    with pytest.raises(UserError, match="max_pixels must be positive"):
        pixel_budget_pgd(classifier_margin, detector_margin, x, y, eps=0.1, region=strokes, max_pixels=0)


def test_pixel_budget_pgds_bisection_finds_each_examples_own_budget():
    """Two examples whose detectors allow two and six moved black pixels and whose classifiers need two and six:
    one fixed k fools one of them at most, the bisection both."""
    x = torch.zeros(2, 1, 4, 4)
    x.view(2, 16)[:, 0] = 0.5
    strokes = x > 0
    weights = torch.zeros(2, 16)
    weights[:, 1:7] = torch.tensor([6.0, 5.0, 4.0, 3.0, 2.0, 1.0])
    needed, allowed = torch.tensor([0.105, 0.205]), torch.tensor([2.5, 6.5])

    def classifier_margin(inputs, _):
        return ((inputs - x).flatten(1) * weights).sum(1) / 10 - needed

    def detector_margin(inputs):
        return allowed - (((inputs - x).abs() > 1e-3) & ~strokes).flatten(1).sum(1).float()

    adv = pixel_budget_pgd(classifier_margin, detector_margin, x, y := torch.zeros(2, dtype=torch.long), eps=0.1,
                           region=strokes, max_pixels=15, steps=10, generator=torch.Generator().manual_seed(0))
    assert (classifier_margin(adv, y) > 0).all() and (detector_margin(adv) >= 0).all()
    assert ((adv - x).abs() > 1e-3).flatten(1)[:, 1:].sum(1).tolist() == [2, 6]


@pytest.mark.parametrize("name", ["cvae1", "cvae3", "m2"])
def test_logit_matching_drives_the_class_scores_towards_another_images(name):
    """PGD on the logit-matching loss, targets the scores of other images: the distance to them falls, and the
    scores are the bounds on log p(x, y) (unnormalised) for Bayes rule, log p(y|x) for a predictive model and
    for M2's q(y|x) (whose bound classifier mode does not use)."""
    torch.manual_seed(0)
    model = small_model(name)
    draws = {} if name == "m2" else {"samples": 1}  # M2's q(y|x) draws nothing
    x, others = torch.rand(4, 1, 8, 8) * 0.5 + 0.5, torch.zeros(4, 1, 8, 8)  # bright images, a black one
    with torch.no_grad(), fixed_noise(0, x.device):
        targets = class_scores(model, others, **draws)
    if name == "cvae1":
        assert (targets.logsumexp(-1) < -1).all()  # log p(x), not a normalised distribution
    else:  # log p(y|x): CVAE-3's predictive, M2's q(y|x)
        assert torch.allclose(targets.logsumexp(-1), torch.zeros(4), atol=1e-5)
    loss = logit_matching_loss(model, seed=0, **draws)
    matched = pgd(loss, x, targets, eps=0.3, steps=30, step_size=0.02, generator=torch.Generator().manual_seed(0))
    assert (loss(matched, targets) > 0.5 * loss(x, targets)).all()


def test_the_detectors_margins_are_their_scores_minus_their_thresholds():
    model = small_model("cvae1")
    x = torch.rand(5, 1, 8, 8)
    reference = torch.softmax(torch.randn(10, 10), -1)
    thresholds = torch.linspace(0.5, 1.5, 10)
    scores, predicted = scores_and_predictions(model, x, samples=2, bound_samples=3, bound_method="iwae",
                                               class_softmax=reference, seed=4)
    marginal = log_px_margin(model, threshold=-100.0, samples=3, method="iwae", seed=4)(x)
    assert torch.allclose(marginal, scores["log_px"] + 100.0, atol=1e-4)
    kl = kl_margin(model, reference, thresholds, samples=2, seed=4)(x)
    assert torch.allclose(kl, scores["kl"] - thresholds[predicted], atol=1e-5)  # thresholds on the score, as set
    top = max_prob_margin(model, threshold=0.3, samples=2, seed=4)(x)
    assert torch.allclose(top, scores["max_prob"] - 0.3, atol=1e-6)
    with pytest.raises(UserError, match="does not bound log p"):
        log_px_margin(small_model("cvae3"), threshold=0.0)


def test_spsa_estimates_the_gradient_without_backpropagation(linear):
    loss, _, x, y = linear
    x = x.requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(x, y).sum(), x)
    estimate = spsa_gradient(loss, x.detach(), y, directions=2000, generator=torch.Generator().manual_seed(0))
    cosine = F.cosine_similarity(estimate.flatten(1), grad.flatten(1))
    assert (cosine > 0.9).all(), cosine


def test_spsa_shares_each_examples_noise_across_its_probes(linear):
    """A stochastic loss under common random numbers (noise reseeded on every call, one draw per batch row, as
    classifier_loss does): every probe of an example sees that example's noise, so the noise cancels in the
    probes' difference and the estimate is the noiseless loss's, exactly."""
    loss, _, x, y = linear

    def noisy(inputs, labels):
        with fixed_noise(0, inputs.device):
            return loss(inputs, labels) + 10 * torch.randn(len(inputs))

    estimates = [spsa_gradient(f, x, y, directions=64, generator=torch.Generator().manual_seed(3)) for f in (loss, noisy)]
    assert torch.allclose(estimates[1], estimates[0], atol=1e-3), (estimates[1] - estimates[0]).abs().max()


@pytest.mark.parametrize("name", ["cvae1", "cvae3"])
def test_spsa_follows_the_gradient_of_a_monte_carlo_classifier(name):
    """On a model's own fixed-noise classifier loss (one draw of z per class for CVAE-1, of z for CVAE-3), the
    estimate points along the true gradient of that loss."""
    torch.manual_seed(0)
    model = small_model(name)
    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    loss = classifier_loss(model, seed=7, samples=1)
    x_grad = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(x_grad, y).sum(), x_grad)
    estimate = spsa_gradient(loss, x, y, directions=400, delta=1e-3, generator=torch.Generator().manual_seed(0))
    cosine = F.cosine_similarity(estimate.flatten(1), grad.flatten(1))
    assert (cosine > 0.8).all(), cosine


def test_spsa_attacks_a_classifier_whose_gradient_is_hidden(linear):
    """A classifier that detaches its input (no gradient reaches x): PGD cannot move, SPSA still raises the loss."""
    loss, _, x, y = linear

    def masked(inputs, labels):
        return loss(inputs.detach(), labels) + 0 * inputs.sum(dim=(1, 2, 3))
    clean = masked(x, y).mean()
    assert masked(pgd(masked, x, y, 0.2), y).mean() < 1.1 * clean  # stuck at its random start
    assert masked(spsa(masked, x, y, 0.2, steps=10, generator=torch.Generator().manual_seed(0)), y).mean() > 1.5 * clean


def test_attack_arguments_are_checked(linear):
    loss, _, x, y = linear
    with pytest.raises(UserError, match=r"eps must lie in \[0, 1\]"):
        pgd(loss, x, y, eps=2.0)
    with pytest.raises(UserError, match="at least one step"):
        pgd(loss, x, y, eps=0.1, steps=0)


def small_model(name: str, **kwargs):
    return MODELS[name](x_shape=(1, 8, 8), net=SMALL_NET, latent_dim=2, **kwargs).eval()


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_mode_is_differentiable_in_x_and_its_loss_is_fixed_by_the_seed(name):
    """log p(y|x) is predict_proba's log, has a gradient in x, and with common random numbers the loss of the
    same x is the same on every call; the global random stream is left where it was."""
    model = small_model(name)
    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    kwargs = {"samples": 3} if next(iter(model.classifier_methods.values())) else {}
    torch.manual_seed(5)
    log_probs = model.log_predictive(x, **kwargs)
    torch.manual_seed(5)
    assert torch.allclose(log_probs.exp(), model.predict_proba(x, **kwargs), atol=1e-6)
    loss = classifier_loss(model, seed=7, **kwargs)
    state = torch.get_rng_state()
    assert torch.equal(loss(x, y), loss(x, y))
    assert torch.equal(torch.get_rng_state(), state)
    x_grad = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(x_grad, y).sum(), x_grad)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_fresh_noise_changes_a_monte_carlo_classifiers_loss():
    model = small_model("cvae1")
    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    loss = classifier_loss(model, seed=None, samples=1)
    assert not torch.equal(loss(x, y), loss(x, y))


def test_detection_scores_are_the_bound_on_log_px_and_the_top_probability():
    """Fixed class bounds and a non-uniform prior in, the log-sum-exp by hand out."""
    model = small_model("cvae1", y_dim=3, class_prior=[0.5, 0.25, 0.25])
    bounds = torch.tensor([[-10.0, -12.0, -9.0], [-20.0, -25.0, -25.0]])
    model.class_bounds = lambda x, samples=1, method="elbo": bounds
    scores = detection_scores(model, torch.zeros(2, 1, 8, 8))
    log_joint = bounds + torch.tensor([0.5, 0.25, 0.25]).log()
    assert torch.allclose(scores["log_px"], torch.tensor([math.log(sum(math.exp(v) for v in row))
                                                          for row in log_joint.tolist()]))
    posterior = torch.softmax(log_joint, -1)
    assert torch.allclose(scores["max_prob"], posterior.max(-1).values)
    assert scores["log_px_given_y"].tolist() == [-9.0, -20.0]  # the bound of the predicted class


def test_predictive_models_are_scored_by_their_top_probability_only():
    scores = detection_scores(small_model("cvae3"), torch.rand(5, 1, 8, 8), samples=2)
    assert set(scores) == {"max_prob"} and scores["max_prob"].shape == (5,)
    assert (scores["max_prob"] >= 1 / 10).all()


def test_the_threshold_rejects_the_asked_fraction_of_clean_scores():
    clean = torch.randperm(200).float()
    threshold = rejection_threshold(clean, 0.05)
    assert (clean < threshold).float().mean() == pytest.approx(0.05)
    assert (clean < rejection_threshold(clean, 0.0)).sum() == 0
    with pytest.raises(UserError, match="false-rejection rate"):
        rejection_threshold(clean, 1.0)


def test_per_class_thresholds_reject_the_asked_fraction_of_each_class():
    """Two classes whose clean scores lie far apart: one threshold per class rejects 5 % of each, where one
    threshold for both would reject 10 % of the low class and none of the high one."""
    scores = torch.cat([torch.randperm(100).float(), 1000 + torch.randperm(100).float()])
    classes = torch.cat([torch.zeros(100), torch.ones(100)]).long()
    thresholds = class_thresholds(scores, classes, 2, 0.05)
    per_class = rejected(scores, classes, thresholds)
    assert per_class[:100].float().mean() == pytest.approx(0.05) and per_class[100:].float().mean() == pytest.approx(0.05)
    pooled = rejected(scores, classes, rejection_threshold(scores, 0.05))
    assert pooled[:100].float().mean() == pytest.approx(0.10) and not pooled[100:].any()
    with pytest.raises(UserError, match="no clean score of class 2"):
        class_thresholds(scores, classes, 3, 0.05)


def test_the_kl_detector_compares_p_y_given_x_with_its_classs_mean_training_softmax():
    probs = torch.tensor([[0.8, 0.2], [0.6, 0.4], [0.1, 0.9], [0.3, 0.7]])
    labels = torch.tensor([0, 0, 1, 1])
    means = mean_class_softmax(probs.log(), labels)
    assert torch.allclose(means, torch.tensor([[0.7, 0.3], [0.2, 0.8]]))
    test = torch.tensor([[0.7, 0.3], [0.5, 0.5], [0.7, 0.3]]).log()
    kl = kl_from_class_softmax(test, means, torch.tensor([0, 0, 1]))
    by_hand = [0.0, 0.7 * math.log(0.7 / 0.5) + 0.3 * math.log(0.3 / 0.5),
               0.2 * math.log(0.2 / 0.7) + 0.8 * math.log(0.8 / 0.3)]
    assert kl.tolist() == pytest.approx(by_hand, abs=1e-6)
    assert kl_from_class_softmax(torch.tensor([[0.0, -torch.inf]]), torch.tensor([[1.0, 0.0]]), torch.tensor([0])) == 0
    with pytest.raises(UserError, match="no image of class 1"):
        mean_class_softmax(probs.log(), torch.zeros(4).long())


@pytest.mark.parametrize("name", ["cvae1", "cvae3"])
def test_scores_come_with_the_predicted_class_and_the_kl_detector_for_every_classifier(name):
    model = small_model(name)
    x = torch.rand(6, 1, 8, 8)
    reference = torch.full((10, 10), 0.1)
    scores, predicted = scores_and_predictions(model, x, samples=2, class_softmax=reference, seed=3)
    with fixed_noise(3, x.device):
        log_probs = model.log_predictive(x, samples=2)
    assert torch.equal(predicted, log_probs.argmax(-1))
    assert torch.allclose(scores["kl"], -kl_from_class_softmax(log_probs, reference, predicted))
    assert set(scores) == ({"max_prob", "kl", "log_px", "log_px_given_y"} if name == "cvae1" else {"max_prob", "kl"})


def test_the_marginal_detector_takes_the_bound_it_is_asked_for():
    model = small_model("cvae1", y_dim=3)
    asked = []
    model.class_bounds = lambda x, samples=1, method="elbo": asked.append((samples, method)) or torch.zeros(len(x), 3)
    detection_scores(model, torch.zeros(2, 1, 8, 8), bound_samples=10, bound_method="iwae")
    assert asked[-1] == (10, "iwae")


def test_auroc_of_low_scores_for_unusual_inputs():
    clean = torch.arange(10.0, 20.0)
    assert auroc(clean, torch.arange(0.0, 10.0)) == 1.0  # every unusual input scores below every clean one
    assert auroc(clean, torch.arange(20.0, 30.0)) == 0.0
    assert auroc(clean, clean.clone()) == pytest.approx(0.5)
    assert auroc(-1000 * clean, -1000 * torch.arange(20.0, 30.0)) == 1.0  # bounds in nats: far outside [0, 1]
    assert auroc(clean, torch.tensor([-torch.inf, 5.0])) == 1.0
    assert auroc(clean, torch.tensor([5.0, 15.5])) == pytest.approx((1.0 + 0.4) / 2)  # 15.5 is below 4 of the 10


def test_out_of_distribution_sets_are_offline_and_shaped_like_the_data(tmp_path, monkeypatch):
    monkeypatch.setenv("CVAEZOO_DATA", str(tmp_path / "empty"))  # no Fashion-MNIST copy: that set is left out
    x = torch.rand(30, 1, 28, 28)
    sets = ood_sets(x)
    assert set(sets) == {"noise", "inverted", "rotated", "digits", "shapes"}
    for name, images in sets.items():
        assert images.shape == x.shape and images.min() >= 0 and images.max() <= 1, name
    assert torch.equal(sets["inverted"], 1 - x)
    assert torch.equal(torch.rot90(sets["rotated"], -1, dims=(-2, -1)), x)
    assert not torch.equal(sets["digits"][0], sets["digits"][1]) and sets["shapes"].std() > 0.1
    fake = write_fake_idx_dir(tmp_path / "empty" / "fashion_mnist", n_test=40)  # where data=fashion_mnist puts it
    with pytest.raises(UserError, match="does not match the expected"):  # not the pinned file: refused, not used
        ood_sets(x)
    test_file = fake / "t10k-images-idx3-ubyte.gz"
    pins = {test_file.name: sha256_of(test_file)}
    monkeypatch.setattr(ood, "fashion_mnist_sha256", lambda: pins)
    assert ood_sets(x)["fashion_mnist"].shape == x.shape  # the pinned file
    (fake / "t10k-images-idx3-ubyte").write_bytes(gzip.decompress(test_file.read_bytes()))  # an unpacked copy
    test_file.unlink()  # the unpacked one is found first anyway; it has no pin: refused
    with pytest.raises(UserError, match="no sha256 pinned"):
        ood_sets(x)
    assert ood_sets(x, fashion_mnist_root=fake)["fashion_mnist"].shape == x.shape  # a local copy named by the user
    monkeypatch.undo()
    assert "t10k-images-idx3-ubyte.gz" in ood.fashion_mnist_sha256()  # the packaged pins


def test_classify_abstains_below_the_threshold_set_on_clean_validation_images(fitted, tmp_path, capsys):
    """--reject 0.05: a trained CVAE-1 abstains on noise (its bound on log p(x) is far below any digit's) and
    keeps most real digits; on the test split about 5 % are rejected; CVAE-3 has no log p(x) to threshold."""
    import csv
    import json

    import numpy as np

    from cvaezoo.cli import classify_main
    from cvaezoo.data import MNIST5k

    images, _ = MNIST5k().load()
    batch = torch.cat([images[-10:], torch.rand(10, 1, 28, 28, generator=torch.Generator().manual_seed(0))])
    np.save(tmp_path / "batch.npy", batch[:, 0].numpy())
    classify_main([str(fitted["cvae1"]), "--images", str(tmp_path / "batch.npy"), "--reject", "0.05",
                   "--out", str(tmp_path / "new")])
    out = capsys.readouterr().out
    with open(tmp_path / "new" / "predictions.csv") as f:
        decisions = [row["predicted"] for row in csv.DictReader(f)]
    assert decisions[10:] == ["abstain"] * 10 and decisions[:10].count("abstain") <= 2, decisions
    assert "abstained on" in out and "log_px below" in out and "5.0% of clean validation images" in out

    classify_main([str(fitted["cvae1"]), "--reject", "0.05", "--out", str(tmp_path / "split")])
    metrics = json.loads((tmp_path / "split" / "metrics.json").read_text())
    assert metrics["reject_score"] == "log_px" and 0 < metrics["abstained"] < 0.15
    with open(tmp_path / "split" / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert sum(row["predicted"] == "abstain" for row in rows) == round(metrics["abstained"] * len(rows))

    with pytest.raises(SystemExit):
        classify_main([str(fitted["cvae3"]), "--reject", "0.05", "--reject-score", "log_px", "--out", str(tmp_path / "c3")])
    assert "--reject-score log_px: cvae3 scores inputs by max_prob" in capsys.readouterr().err
