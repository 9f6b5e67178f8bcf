"""Classifiers under attack and out of distribution: L-infinity attacks through classifier mode, and the
scores that flag unusual inputs (the generative models' own bound on log p(x), or the top class probability).

An attack maximises a per-example loss ``loss(x, y) -> (B,)`` (:func:`classifier_loss`: -log p(y|x) of a model's
classifier mode) inside the L-infinity ball of radius eps around x, within the pixel range [0, 1]:

- :func:`fgsm`: one signed-gradient step of size eps (Goodfellow et al., 2015);
- :func:`pgd`: projected gradient ascent from a random start, keeping each example's highest-loss iterate
  (Madry et al., 2018);
- :func:`mim`: the momentum iterative method (Dong et al., 2018): signed steps along an accumulated, L1-normalised
  gradient, from x itself;
- :func:`latent_descent`: signed steps towards the model's own reconstruction of x as another class (Schott et
  al., 2019), for the generative models: no gradient of the classifier at all;
- :func:`orthogonal_pgd`: a detection-aware attack (Bryniarski et al., 2022) that fools the classifier and the
  detector in turn, each step orthogonal to the other's gradient;
- :func:`region_pgd`: PGD on a region of the pixels only (e.g. a digit's strokes, the background left black), and
  :func:`pixel_budget_pgd`: the same plus the k pixels outside it that buy the most loss, against a detector that
  charges a price per moved pixel;
- :func:`spsa`: the same steps with the gradient estimated from loss differences along random +-1 directions
  (Uesato et al., 2018): no backpropagation, so a classifier whose gradient is noisy or uninformative does not
  look robust for that reason alone.

Models that classify by Monte-Carlo (over z, or the ELBO's posterior draws) are attacked with fixed common
random numbers: every evaluation of the loss reseeds the noise, so the loss is a deterministic function of x.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import BinaryAUROC

from cvaezoo.errors import UserError
from cvaezoo.inference import batches
from cvaezoo.models import ConditionalModel

#: a per-example loss to maximise, (x, y) -> (B,)
Loss = Callable[[Tensor, Tensor], Tensor]


@contextmanager
def fixed_noise(seed: int | None, device: torch.device) -> Iterator[None]:
    """Within the block, the random streams (of the CPU and of ``device``) start from ``seed``; afterwards they
    continue as if the block had not run. ``seed=None``: fresh noise."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


#: the pixel noises every classifier is scored under (cvaezoo-evaluate, model cards, experiments/noise): name ->
#: (kind, size); uniform noise of +-size, or Gaussian of standard deviation size
PIXEL_NOISES = {"uniform_0.05": ("uniform", 0.05), "gaussian_0.05": ("gaussian", 0.05), "uniform_0.1": ("uniform", 0.1)}


def random_noise(x: Tensor, kind: str, size: float, seed: int = 1) -> Tensor:
    """``x`` plus ``kind`` ("uniform": +-size, "gaussian": standard deviation size) noise, clipped to [0, 1], from its
    own generator. Not seed 0 by default: the binarisation of new inputs draws from seed 0, and noise from the same
    stream would be the Bernoulli draw's own uniforms (a background pixel would never flip)."""
    if kind not in ("uniform", "gaussian"):
        raise UserError(f"noise kind must be uniform or gaussian, got {kind!r}")
    generator = torch.Generator().manual_seed(seed)
    noise = 2 * torch.rand(x.shape, generator=generator) - 1 if kind == "uniform" else torch.randn(x.shape, generator=generator)
    return (x + size * noise).clamp(0, 1)


def margin(log_probs: Tensor, y: Tensor) -> Tensor:
    """Carlini & Wagner's margin, (B,): the best other class's log-probability minus the true class's (positive
    exactly when the example is misclassified). On log p(y|x) it is the difference of the class scores (logits,
    or bounds on log p(x, y)), since the normaliser cancels."""
    true = log_probs.gather(1, y[:, None])[:, 0]
    others = log_probs.scatter(1, y[:, None], -torch.inf)
    return others.max(1).values - true


#: the per-example losses an attacker can follow on log p(y|x), (log_probs, y) -> (B,)
LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "cross_entropy": lambda log_probs, y: F.nll_loss(log_probs, y, reduction="none"),
    "margin": margin,
}


def classifier_loss(model: ConditionalModel, method: str | None = None, samples: int | None = None,
                    seed: int | None = 0, objective: str = "cross_entropy", eot: int = 1,
                    confidence: float | None = None) -> Loss:
    """The attacker's loss on the model's classifier mode with these options (``method`` and ``samples``),
    differentiable in x: ``objective`` "cross_entropy" (-log p(y|x)) or "margin" (:func:`margin`), capped at
    ``confidence`` when given (Carlini & Wagner's kappa: past it, misclassifying further earns nothing, so an
    attacker that adds another term, :func:`with_detector_hinge`, spends the rest of its steps on that term).

    The model's noise: with ``seed``, fixed on every call (common random numbers: a deterministic loss); with
    ``eot`` > 1, the loss is averaged over ``eot`` draws (expectation over transformation, Athalye et al. 2018):
    seeds seed, seed + 1, ... or, with ``seed=None``, fresh draws on every call."""
    model.classifier_mode(method, samples)  # a bad option fails here, not inside the attack
    if objective not in LOSSES:
        raise UserError(f"objective must be one of {sorted(LOSSES)}, got {objective!r}")
    if eot < 1:
        raise UserError(f"eot must be at least 1 (draws of the model's noise to average), got {eot}")
    score = LOSSES[objective]

    def loss(x: Tensor, y: Tensor) -> Tensor:
        total = 0
        for draw in range(eot):
            with fixed_noise(None if seed is None else seed + draw, x.device):
                total = total + score(model.log_predictive(x, method, samples), y)
        return total / eot if confidence is None else (total / eot).clamp(max=confidence)

    return loss


#: the classifier modes that are Bayes rule over a bound on log p(x, y) (ConditionalVAE.class_bounds' methods)
BAYES_RULE_METHODS = ("elbo", "iwae", "optimise")


def class_scores(model: ConditionalModel, x: Tensor, method: str | None = None, samples: int | None = None) -> Tensor:
    """The scores classifier mode takes the softmax of, (B, C), differentiable in x: the bound on log p(x, y) per
    class for Bayes rule over a model of x (unnormalised: they carry log p(x)), log p(y|x) otherwise (a
    predictive model, or M2's q(y|x))."""
    mode = model.classifier_mode(method, samples)
    if has_marginal(model) and mode.method in BAYES_RULE_METHODS:
        return model.class_log_joints(x, mode.samples, mode.method)
    return model.log_predictive(x, method, samples)


def logit_matching_loss(model: ConditionalModel, method: str | None = None, samples: int | None = None,
                        seed: int | None = 0) -> Loss:
    """Logit matching (Tramer et al., 2020): minus the squared distance between the class scores of x
    (:func:`class_scores`) and target scores, passed in place of the labels, (B, C): e.g. those of a clean
    image of another class, so that every detector built on the scores sees a clean image of that class."""
    model.classifier_mode(method, samples)

    def loss(x: Tensor, target_scores: Tensor) -> Tensor:
        with fixed_noise(seed, x.device):
            return -((class_scores(model, x, method, samples) - target_scores) ** 2).sum(-1)

    return loss


def with_detector_hinge(loss: Loss, detector_margin: Callable[[Tensor], Tensor], weight: float = 1.0) -> Loss:
    """A detection-aware attacker's loss (Carlini & Wagner, 2017): ``loss`` minus ``weight`` times the hinge
    max(0, -detector_margin(x)), where detector_margin is the detector's score minus its threshold (negative
    where the detector flags x). An iterate the detector passes costs nothing; one it flags costs in proportion
    to how far past the threshold it is, so the ascent fools the classifier while staying unflagged."""
    def hinged(x: Tensor, y: Tensor) -> Tensor:
        return loss(x, y) - weight * F.relu(-detector_margin(x))

    return hinged


def log_px_margin(model: ConditionalModel, threshold: float, samples: int = 10, method: str = "elbo",
                  seed: int | None = 0) -> Callable[[Tensor], Tensor]:
    """The marginal detector's margin, differentiable in x: the bound on log p(x) (log-sum-exp over classes of
    the bound on log p(x, y), ``method`` with ``samples`` draws, noise fixed by ``seed``) minus ``threshold``."""
    if not has_marginal(model):
        raise UserError(f"{model.model_name} does not bound log p(x): it has no marginal detector")

    def detector_margin(x: Tensor) -> Tensor:
        with fixed_noise(seed, x.device):
            return torch.logsumexp(model.class_log_joints(x, samples, method), -1) - threshold

    return detector_margin


def max_prob_margin(model: ConditionalModel, threshold: float, method: str | None = None, samples: int | None = None,
                    seed: int | None = 0) -> Callable[[Tensor], Tensor]:
    """The top-probability detector's margin, differentiable in x: max_y p(y|x) minus ``threshold``."""
    def detector_margin(x: Tensor) -> Tensor:
        with fixed_noise(seed, x.device):
            return model.log_predictive(x, method, samples).exp().max(-1).values - threshold

    return detector_margin


def kl_margin(model: ConditionalModel, class_softmax: Tensor, thresholds: Tensor, method: str | None = None,
              samples: int | None = None, seed: int | None = 0) -> Callable[[Tensor], Tensor]:
    """The KL detector's margin, differentiable in x: its score -KL(m_c || p(y|x)) (:func:`kl_from_class_softmax`)
    minus the threshold of the predicted class c (``thresholds`` on that score, one per class, as
    :func:`class_thresholds` sets them on ``detection_scores``' "kl")."""
    def detector_margin(x: Tensor) -> Tensor:
        with fixed_noise(seed, x.device):
            log_probs = model.log_predictive(x, method, samples)
        predicted = log_probs.argmax(-1)
        return -kl_from_class_softmax(log_probs, class_softmax.to(x), predicted) - thresholds.to(x)[predicted]

    return detector_margin


def _check_eps(eps: float) -> None:
    if not 0 <= eps <= 1:
        raise UserError(f"eps must lie in [0, 1] (pixels are in [0, 1]), got {eps}")


def _project(adv: Tensor, x: Tensor, eps: float) -> Tensor:
    """The nearest point of the eps-ball around x that lies in [0, 1]."""
    return torch.minimum(torch.maximum(adv, x - eps), x + eps).clamp(0, 1)


def loss_and_gradient(loss: Loss, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """The per-example loss, (B,), and the gradient in x of its sum, from one forward and one backward pass."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        values = loss(x, y)
        (grad,) = torch.autograd.grad(values.sum(), x)
    return values.detach(), grad


def loss_gradient(loss: Loss, x: Tensor, y: Tensor) -> Tensor:
    """The gradient in x of the summed per-example loss."""
    return loss_and_gradient(loss, x, y)[1]


def fgsm(loss: Loss, x: Tensor, y: Tensor, eps: float) -> Tensor:
    """x + eps * sign(grad loss), clipped to [0, 1]."""
    _check_eps(eps)
    return _project(x + eps * loss_gradient(loss, x, y).sign(), x, eps)


#: an attack's step rule: the iterate -> (its loss, if the rule computed it on the way, else None; the direction
#: whose sign the step follows)
StepRule = Callable[[Tensor], tuple[Tensor | None, Tensor]]


def _signed_ascent(loss: Loss, x: Tensor, y: Tensor, eps: float, steps: int, step_size: float | None,
                   rule: StepRule, generator: torch.Generator | None, random_start: bool = True,
                   restarts: int = 1) -> Tensor:
    """Projected signed-gradient ascent from a uniform random start in the ball (or from x), ``restarts`` times;
    each example's highest-loss iterate over every restart (the start and every step's result are scored)."""
    _check_eps(eps)
    if steps < 1:
        raise UserError(f"an attack needs at least one step, got {steps}")
    if restarts < 1:
        raise UserError(f"an attack needs at least one start, got restarts={restarts}")
    step_size = 2.5 * eps / steps if step_size is None else step_size
    best, best_loss = x.clone(), torch.full((len(x),), -torch.inf, device=x.device)
    for _ in range(restarts):
        if random_start:
            noise = torch.rand(x.shape, generator=generator, device="cpu").to(x) * 2 - 1
            adv = _project(x + eps * noise, x, eps)
        else:
            adv = x.clone()
        for step in range(steps + 1):
            current, direction = rule(adv) if step < steps else (None, None)
            if current is None:
                with torch.no_grad():
                    current = loss(adv, y)
            better = current > best_loss
            best[better], best_loss[better] = adv[better], current[better]
            if direction is not None:
                adv = _project(adv + step_size * direction.sign(), x, eps)
    return best


def pgd(loss: Loss, x: Tensor, y: Tensor, eps: float, steps: int = 20, step_size: float | None = None,
        generator: torch.Generator | None = None, restarts: int = 1) -> Tensor:
    """Projected gradient ascent: ``steps`` signed steps of ``step_size`` (default 2.5 eps / steps) from a
    uniform random start, kept in the eps-ball and [0, 1], from each of ``restarts`` random starts; each
    example's highest-loss iterate over all of them."""
    return _signed_ascent(loss, x, y, eps, steps, step_size, lambda adv: loss_and_gradient(loss, adv, y), generator,
                          restarts=restarts)


def mim(loss: Loss, x: Tensor, y: Tensor, eps: float, steps: int = 100, step_size: float = 0.01,
        decay: float = 1.0) -> Tensor:
    """Momentum iterative method (Dong et al., 2018; Li et al. 2019's MIM: 100 steps of 0.01, decay 1): from x,
    g <- decay * g + grad / mean|grad| (each example's gradient over its mean absolute value), then a signed step
    of ``step_size`` along g, kept in the eps-ball and [0, 1]; each example's highest-loss iterate."""
    momentum = torch.zeros_like(x)

    def rule(adv: Tensor) -> tuple[Tensor, Tensor]:
        nonlocal momentum
        values, grad = loss_and_gradient(loss, adv, y)
        scale = grad.abs().flatten(1).mean(1).clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))
        momentum = decay * momentum + grad / scale
        return values, momentum

    return _signed_ascent(loss, x, y, eps, steps, step_size, rule, None, random_start=False)


def spsa_gradient(loss: Loss, x: Tensor, y: Tensor, directions: int = 32, delta: float = 0.01,
                  generator: torch.Generator | None = None) -> Tensor:
    """Estimate of grad loss from 2 * ``directions`` evaluations, no backpropagation:
    mean over random +-1 vectors v of (loss(x + delta v) - loss(x - delta v)) / (2 delta) * v.

    Each probe is one call of ``loss`` on a batch shaped like x, so a loss with common random numbers (the
    model's noise reseeded on every call and drawn per batch row, :func:`classifier_loss`) scores every probe
    of an example with that example's noise: the difference of two probes is the loss's slope alone, not a
    difference of two noise draws amplified by 1 / (2 delta)."""
    v = (torch.randint(0, 2, (directions, *x.shape), generator=generator, device="cpu").to(x) * 2 - 1)
    with torch.no_grad():
        slopes = torch.stack([(loss(x + delta * d, y) - loss(x - delta * d, y)) / (2 * delta) for d in v])  # (D, B)
    return (slopes.view(directions, len(x), *[1] * (x.dim() - 1)) * v).mean(0)


def spsa(loss: Loss, x: Tensor, y: Tensor, eps: float, steps: int = 20, step_size: float | None = None,
         directions: int = 32, delta: float = 0.01, generator: torch.Generator | None = None) -> Tensor:
    """:func:`pgd` with :func:`spsa_gradient` in place of the true gradient (a gradient-free check)."""
    return _signed_ascent(loss, x, y, eps, steps, step_size,
                          lambda adv: (None, spsa_gradient(loss, adv, y, directions, delta, generator)), generator)


def latent_descent(model: ConditionalModel, loss: Loss, x: Tensor, y: Tensor, eps: float, steps: int = 50,
                   step_size: float | None = None, method: str | None = None, samples: int | None = None,
                   seed: int | None = 0) -> Tensor:
    """Latent descent (Schott et al., 2019's attack on their analysis-by-synthesis model), for a model of x
    given the class: no gradient of the classifier; from x, signed steps of ``step_size`` (default 2.5 eps /
    steps) towards the model's reconstruction of the iterate as its best-scoring wrong class (the mean of
    p(x | z, y') at z = the mean of q(z | x, y'), y' the wrong class of highest :func:`class_scores` with
    ``method`` and ``samples``, noise fixed by ``seed``), kept in the eps-ball and [0, 1]; each example's
    highest-``loss`` iterate."""
    if not has_marginal(model):
        raise UserError(f"{model.model_name} has no class-conditional model of x to reconstruct with")

    def rule(adv: Tensor) -> tuple[None, Tensor]:
        with torch.no_grad(), fixed_noise(seed, adv.device):
            scores = class_scores(model, adv, method, samples)
            wrong = scores.scatter(1, y[:, None], -torch.inf).argmax(1)
            c = model.encode_condition(wrong)
            reconstruction = model.decode(model.posterior(adv, c).mean, c).view_as(adv)
        return None, reconstruction - adv

    return _signed_ascent(loss, x, y, eps, steps, step_size, rule, None, random_start=False)


def _without_component_along(g: Tensor, other: Tensor) -> Tensor:
    """Each example's ``g`` minus its projection on that example's ``other`` (orthogonal to it)."""
    flat, along = g.flatten(1), other.flatten(1)
    coefficient = (flat * along).sum(1, keepdim=True) / (along * along).sum(1, keepdim=True).clamp_min(1e-30)
    return (flat - coefficient * along).view_as(g)


class _BestAgainstDetector:
    """Each example's best image so far for an attack on a classifier and its detector, ranked: fooled (``loss``
    > 0) and unflagged (detector margin >= 0), past ``min_loss``, first; fooled and unflagged; fooled (flagged);
    then the rest; by the detector margin within the fooled ranks, by ``loss`` below them."""

    def __init__(self, x: Tensor, min_loss: float) -> None:
        self.images, self.min_loss = x.clone(), min_loss
        self.rank = torch.full((len(x),), -1, dtype=torch.long, device=x.device)
        self.value = torch.full((len(x),), -torch.inf, device=x.device)

    def offer(self, adv: Tensor, values: Tensor, margins: Tensor) -> None:
        """Keep ``adv`` where it ranks above the best so far (``values``: its loss; ``margins``: the detector's)."""
        fooled, unflagged = values > 0, margins >= 0
        rank = fooled.long() * (1 + unflagged.long() * (1 + (values > self.min_loss).long()))  # 0 ... 3
        value = torch.where(fooled, margins, values)
        better = (rank > self.rank) | ((rank == self.rank) & (value > self.value))
        self.images[better], self.rank[better], self.value[better] = adv[better], rank[better], value[better]


def orthogonal_pgd(loss: Loss, detector_margin: Callable[[Tensor], Tensor], x: Tensor, y: Tensor, eps: float,
                   steps: int = 20, step_size: float | None = None, starts: Sequence[Tensor] = (),
                   min_loss: float = 0.0, norm: str = "l2") -> Tensor:
    """Orthogonal projected gradient descent (Bryniarski et al., 2022), the attack that broke detectors a sum
    of the two losses does not: it fools the classifier and the detector in turn, each step orthogonal to the
    other's gradient. ``loss`` is positive exactly where the classifier is fooled (:func:`margin`);
    ``detector_margin`` is the detector's score minus its threshold (negative where it flags x).

    Per step and example: while ``loss`` <= ``min_loss``, along grad loss minus its component along grad
    detector_margin (the classifier is pushed without moving the detector, to first order); past it, along grad
    detector_margin minus its component along grad loss (the detector is satisfied without undoing the
    misclassification). A sum with a hinge (:func:`with_detector_hinge`) cannot do this when one gradient
    dwarfs the other: a bound on log p(x) that is 1 000 nats below its threshold owns every sign. Steps of
    ``step_size`` (default 2.5 eps / steps): "l2", the direction scaled to that root-mean-square pixel change
    (the direction, and so the orthogonality, is kept), or "linf", its sign; kept in the eps-ball and [0, 1].
    From x and from each of ``starts`` (e.g. another attack's adversarial images); each example's best iterate
    over all of them, ranked by :class:`_BestAgainstDetector`. The buffer only steers the steps: a success inside
    it is kept over a flagged one past it."""
    _check_eps(eps)
    if steps < 1:
        raise UserError(f"an attack needs at least one step, got {steps}")
    if norm not in ("l2", "linf"):
        raise UserError(f"norm must be l2 or linf, got {norm!r}")
    step_size = 2.5 * eps / steps if step_size is None else step_size
    best = _BestAgainstDetector(x, min_loss)
    for start in (x, *starts):
        adv = _project(start.detach().clone(), x, eps)
        for step in range(steps + 1):
            if step < steps:
                values, grad = loss_and_gradient(loss, adv, y)
                margins, detector_grad = loss_and_gradient(lambda inputs, _: detector_margin(inputs), adv, y)
            else:  # the last iterate is only scored
                with torch.no_grad():
                    values, margins = loss(adv, y), detector_margin(adv)
            best.offer(adv, values, margins)
            fooled = values > min_loss  # past the buffer: the steps turn to the detector
            if step == steps:
                break
            shape = (-1, *[1] * (x.dim() - 1))
            direction = torch.where(fooled.view(shape), _without_component_along(detector_grad, grad),
                                    _without_component_along(grad, detector_grad))
            if norm == "linf":
                direction = direction.sign()
            else:
                rms = direction.flatten(1).pow(2).mean(1).sqrt().clamp_min(1e-30)
                direction = direction / rms.view(shape)
            adv = _project(adv + step_size * direction, x, eps)
    return best.images


def region_pgd(loss: Loss, x: Tensor, y: Tensor, eps: float, region: Tensor, steps: int = 20,
               generator: torch.Generator | None = None) -> Tensor:
    """:func:`pgd` that moves only the pixels in ``region`` (a boolean mask of x's shape); the others keep x's
    values (e.g. a digit's background left exactly black)."""
    def on_region(adv: Tensor, labels: Tensor) -> Tensor:
        return loss(torch.where(region, adv, x), labels)

    return torch.where(region, pgd(on_region, x, y, eps, steps=steps, generator=generator), x)


def pixel_budget_pgd(loss: Loss, detector_margin: Callable[[Tensor], Tensor], x: Tensor, y: Tensor, eps: float,
                     region: Tensor, max_pixels: int = 256, steps: int = 20,
                     generator: torch.Generator | None = None, min_loss: float = 0.0) -> Tensor:
    """A detection-aware attack on a detector that charges a price per pixel it sees moved: :func:`region_pgd`
    on ``region`` plus the k pixels outside it that buy the most ``loss`` at PGD's result on ``region`` alone (to
    first order: |grad loss| times the room the eps-ball and [0, 1] leave in the gradient's direction, so a black
    pixel whose gradient points below 0 buys nothing), k found per example by bisection in [0, ``max_pixels``]:
    more pixels while the classifier is not fooled past ``min_loss``, fewer while the detector flags the image.
    ``loss`` is positive exactly where the classifier is fooled, ``detector_margin`` the detector's score minus
    its threshold; each example's best over all rounds, ranked by :class:`_BestAgainstDetector`. A bound on
    log p(x) whose pixel likelihood has an outlier component (the discretised logistic with a uniform floor) is
    flat in a black pixel once it leaves its bin: each moved background pixel costs about the same, however far
    it moves, so the detector is a budget of pixels, and this spends it on the pixels that buy the classifier's
    loss."""
    if max_pixels < 1:
        raise UserError(f"max_pixels must be positive, got {max_pixels}")
    best = _BestAgainstDetector(x, min_loss)
    region = region.expand_as(x)

    def attack(chosen: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        adv = region_pgd(loss, x, y, eps, region | chosen, steps=steps, generator=generator)
        with torch.no_grad():
            values, margins = loss(adv, y), detector_margin(adv)
        best.offer(adv, values, margins)
        return adv, values, margins

    adv, values, margins = attack(torch.zeros_like(region))
    grad = loss_gradient(loss, adv, y)
    room = torch.where(grad > 0, (1 - x).clamp(max=eps), x.clamp(max=eps))
    gain = (grad.abs() * room).masked_fill(region, -1).flatten(1)
    rank = gain.argsort(dim=1, descending=True).argsort(dim=1)  # each pixel's place in its example's order
    low = torch.zeros(len(x), dtype=torch.long, device=x.device)  # fewer pixels did not fool the classifier
    high = (~region).flatten(1).sum(1).clamp(max=max_pixels)  # more pixels are flagged (or there are no more)
    done = (values > min_loss) & (margins >= 0)
    while not done.all() and bool((low < high).any()):
        k = torch.where(done, low, (low + high + 1) // 2)
        chosen = (rank < k.view(-1, 1)).view_as(x) & ~done.view(-1, *[1] * (x.dim() - 1))
        _, values, margins = attack(chosen)
        fooled, unflagged = values > min_loss, margins >= 0
        done |= fooled == unflagged  # a success, or flagged before it fools: fewer pixels fool less, more flag more
        low = torch.where(~done & ~fooled, k, low)
        high = torch.where(~done & fooled, k - 1, high)
        done |= low >= high
    return best.images


# ----- scores that flag unusual inputs --------------------------------------------------------------------
def has_marginal(model: ConditionalModel) -> bool:
    """Whether the model bounds log p(x) (class-conditional models of x); others are scored by p(y|x) only."""
    return model.target_name == "x" and model.y_kind == "class"


def score_names(model: ConditionalModel) -> list[str]:
    """The scores :func:`detection_scores` gives for this model, the default (for rejection) first."""
    return ["log_px", "log_px_given_y", "max_prob"] if has_marginal(model) else ["max_prob"]


def detection_scores(model: ConditionalModel, x: Tensor, method: str | None = None, samples: int | None = None,
                     bound_samples: int = 10, bound_method: str = "elbo", class_softmax: Tensor | None = None,
                     batch_size: int = 250, seed: int = 0) -> dict[str, Tensor]:
    """The scores of :func:`scores_and_predictions`, without the predicted classes."""
    return scores_and_predictions(model, x, method, samples, bound_samples, bound_method, class_softmax, batch_size,
                                  seed)[0]


@torch.no_grad()
def scores_and_predictions(model: ConditionalModel, x: Tensor, method: str | None = None, samples: int | None = None,
                           bound_samples: int = 10, bound_method: str = "elbo", class_softmax: Tensor | None = None,
                           batch_size: int = 250, seed: int = 0) -> tuple[dict[str, Tensor], Tensor]:
    """Per-example scores, higher for inputs more like the clean training data, (N,) each, and the class that
    classifier mode predicts, (N,) (which per-class thresholds, :func:`class_thresholds`, are indexed by):

    ``max_prob``: the top probability of classifier mode with these options (``method`` and ``samples``; every
    classifier; Hendrycks & Gimpel, 2017);
    ``kl`` (with ``class_softmax``, every classifier): minus KL(m_c || p(y|x)) for the predicted class c, where
    m_c = ``class_softmax[c]`` is the mean p(y|x) of the training images of class c (:func:`mean_class_softmax`;
    Li et al. 2019's KL detector);
    ``log_px``: the bound on log p(x) = log sum_y p(x, y) from ``bound_method``'s bound ("elbo" or "iwae") with
    ``bound_samples`` draws (models of x; Li et al.'s marginal detector);
    ``log_px_given_y``: the bound on log p(x|y_hat) for the predicted class y_hat (models of x; on log p(x, y_hat)
    for a model of the label too, the "logit" of Li et al.: under one threshold per class the two reject alike).
    The noise is fixed by ``seed`` so that the same x always scores the same.
    """
    model.eval()
    model.classifier_mode(method, samples)  # a bad option fails before the first batch
    parts: dict[str, list[Tensor]] = {"max_prob": []}
    predictions = []
    for batch in batches(x, batch_size):
        batch = batch.to(model.device)
        with fixed_noise(seed, batch.device):
            log_probs = model.log_predictive(batch, method, samples)
        predicted = log_probs.argmax(-1)
        parts["max_prob"].append(log_probs.exp().max(-1).values.cpu())
        predictions.append(predicted.cpu())
        if class_softmax is not None:
            parts.setdefault("kl", []).append(-kl_from_class_softmax(log_probs, class_softmax.to(batch), predicted).cpu())
        if has_marginal(model):
            with fixed_noise(seed, batch.device):
                bounds = model.class_bounds(batch, samples=bound_samples, method=bound_method)
            parts.setdefault("log_px", []).append(torch.logsumexp(bounds + model.label_log_prior, -1).cpu())
            parts.setdefault("log_px_given_y", []).append(bounds.gather(1, predicted[:, None])[:, 0].cpu())
    return {name: torch.cat(values) for name, values in parts.items()}, torch.cat(predictions)


def mean_class_softmax(log_probs: Tensor, labels: Tensor) -> Tensor:
    """(C, C): row c is the mean predictive distribution p(y|x) over the images of label c (Li et al.'s m_c).
    Every class needs an image."""
    n_classes = log_probs.shape[1]
    counts = torch.bincount(labels, minlength=n_classes)
    if (counts == 0).any():
        raise UserError(f"no image of class {int((counts == 0).nonzero()[0])} to average p(y|x) over")
    sums = torch.zeros(n_classes, n_classes, dtype=log_probs.dtype).index_add_(0, labels, log_probs.exp())
    return sums / counts[:, None]


def kl_from_class_softmax(log_probs: Tensor, class_softmax: Tensor, classes: Tensor) -> Tensor:
    """KL(m_c || p(y|x)) per example, (N,), with m_c = ``class_softmax[c]`` for the example's class c."""
    reference = class_softmax[classes]
    return (torch.xlogy(reference, reference) - torch.where(reference > 0, reference * log_probs, 0)).sum(-1)


def rejection_threshold(clean_scores: Tensor, false_rejection: float) -> float:
    """The score below which an input is rejected, set so that a ``false_rejection`` fraction of the clean
    scores falls below it (their ``false_rejection`` quantile)."""
    if not 0 <= false_rejection < 1:
        raise UserError(f"the false-rejection rate must lie in [0, 1), got {false_rejection}")
    return float(torch.quantile(clean_scores.double(), false_rejection))


def class_thresholds(clean_scores: Tensor, classes: Tensor, n_classes: int, false_rejection: float) -> Tensor:
    """One threshold per class, (C,): :func:`rejection_threshold` of the clean scores of each class (an input of
    class c is rejected below entry c). Every class needs a clean score."""
    counts = torch.bincount(classes, minlength=n_classes)
    if (counts == 0).any():
        raise UserError(f"no clean score of class {int((counts == 0).nonzero()[0])} to set its threshold on")
    return torch.tensor([rejection_threshold(clean_scores[classes == c], false_rejection) for c in range(n_classes)])


def rejected(scores: Tensor, classes: Tensor, thresholds: Tensor | float) -> Tensor:
    """Which inputs fall below their threshold, (N,) bool: one threshold for all, or one per class (entry c
    for an input of class ``classes``)."""
    thresholds = torch.as_tensor(thresholds, dtype=scores.dtype)
    return scores < (thresholds[classes] if thresholds.dim() else thresholds)


def auroc(clean_scores: Tensor, unusual_scores: Tensor) -> float:
    """Area under the ROC curve of telling the unusual inputs from the clean ones by a low score
    (1: every unusual input scores below every clean one; 0.5: no better than chance)."""
    scores = -torch.cat([clean_scores, unusual_scores]).double()
    if torch.isnan(scores).any():
        raise UserError("a detection score is NaN")
    # torchmetrics reads scores outside [0, 1] as logits and squashes them (a bound of -900 and one of -1500 both
    # become 0); ranks in [0, 1] keep the order and the ties, which is all the AUROC depends on
    ranks = torch.unique(scores, return_inverse=True)[1].double()
    targets = torch.cat([torch.zeros(len(clean_scores)), torch.ones(len(unusual_scores))]).long()
    return float(BinaryAUROC()(ranks / max(1.0, float(ranks.max())), targets))
