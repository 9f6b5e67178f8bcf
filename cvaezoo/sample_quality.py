"""The quality of samples, measured in the reference classifier's feature space, each score beside its floor:
the Fréchet and kernel distances, precision and recall against real images, the same scores between two real sets
(what a generator that draws exactly from the data scores at these sizes), and the diversity of structured
outputs (several completions per input)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import poly_kernel

from cvaezoo.errors import UserError
from cvaezoo.inference import batches, require_image_decoder, samples_for
from cvaezoo.models import ConditionalModel


class ReferenceFeatures(nn.Module):
    """The reference classifier's penultimate features: the space the Fréchet distance is measured in (FID
    with a classifier trained on the data in place of Inception, whose weights cannot be downloaded here)."""

    def __init__(self, reference: nn.Module):
        super().__init__()
        self.encoder = reference.encoder
        self.num_features = reference.encoder.out_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.encoder(x)


@torch.no_grad()
def frechet_distance(reference: nn.Module, real: Tensor, generated: Tensor, batch_size: int = 500) -> float:
    """||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)) between Gaussians fitted to the reference's features
    of the real and of the generated images (torchmetrics' FID with that feature extractor); 0 for equal sets."""
    metric = FrechetInceptionDistance(feature=ReferenceFeatures(reference).eval(), normalize=True)
    for images, is_real in ((real, True), (generated, False)):
        for batch in batches(images, batch_size):
            metric.update(batch.to(reference.device).float(), real=is_real)
    return float(metric.compute())


@torch.no_grad()
def reference_features(reference: nn.Module, images: Tensor, batch_size: int = 500) -> Tensor:
    """The reference's penultimate features of the images, (N, D), on the CPU."""
    encoder = ReferenceFeatures(reference).eval()
    return torch.cat([encoder(b.to(reference.device).float()).cpu() for b in batches(images, batch_size)])


def manifold_precision_recall(real: Tensor, generated: Tensor, k: int = 3) -> dict[str, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) of two sets of feature vectors: each set's
    manifold is the union of balls around its points reaching their k-th nearest neighbour in the set.
    ``precision``: the fraction of generated points inside the real manifold (blurred or broken samples lower
    it); ``recall``: the fraction of real points inside the generated manifold (missing modes lower it)."""

    def covered(points: Tensor, support: Tensor) -> Tensor:
        radii = torch.cdist(support, support).kthvalue(k + 1, dim=1).values  # the nearest (k = 0) is the point itself
        return (torch.cdist(points, support) <= radii).any(1).double().mean()

    if min(len(real), len(generated)) <= k:
        raise UserError(f"precision and recall with k={k} need more than {k} images per set, "
                        f"got {len(real)} real and {len(generated)} generated")
    real, generated = real.double(), generated.double()
    return {"precision": float(covered(generated, real)), "recall": float(covered(real, generated))}


def kernel_distance(real: Tensor, generated: Tensor) -> float:
    """The kernel distance (KID, Binkowski et al. 2018) of two sets of feature vectors: the unbiased estimate of
    the squared maximum mean discrepancy with the cubic kernel k(a, b) = (a.b / D + 1)^3 (torchmetrics'
    ``poly_kernel``), over the whole sets, of any two sizes. Unbiased, unlike the Fréchet distance: two sets drawn
    from one distribution score 0 in expectation at every size (a single estimate can be negative)."""
    real, generated = real.double(), generated.double()
    m, n = len(real), len(generated)
    if min(m, n) < 2:
        raise UserError(f"the kernel distance needs at least 2 images per set, got {m} real and {n} generated")
    within_real = poly_kernel(real, real)
    within_generated = poly_kernel(generated, generated)
    return float((within_real.sum() - within_real.diagonal().sum()) / (m * (m - 1))
                 + (within_generated.sum() - within_generated.diagonal().sum()) / (n * (n - 1))
                 - 2 * poly_kernel(real, generated).mean())


def _quality_scores(reference: nn.Module, real: Tensor, generated: Tensor, max_points: int) -> dict[str, float]:
    generator = torch.Generator().manual_seed(0)
    subsets = [images[torch.randperm(len(images), generator=generator)[:max_points]] if len(images) > max_points
               else images for images in (real, generated)]
    features = [reference_features(reference, images) for images in subsets]
    return {"frechet_distance": frechet_distance(reference, real, generated),
            "kernel_distance": kernel_distance(*features), **manifold_precision_recall(*features)}


#: each score of :func:`sample_quality` and the name of the same score between two real sets
FLOORS = {"frechet_distance": "frechet_distance_floor", "kernel_distance": "kernel_distance_floor",
          "precision": "precision_ceiling", "recall": "recall_ceiling"}


def sample_quality(reference: nn.Module, real: Tensor, generated: Tensor, control: Tensor | None = None,
                   max_points: int = 5000) -> dict[str, float]:
    """``frechet_distance``, ``kernel_distance``, ``precision`` and ``recall`` of generated images against real
    ones, all in the reference classifier's feature space; the kernel distance, precision and recall use a fixed
    random subset of at most ``max_points`` images of each set (their cost grows with the square of its size).

    ``control``: real images other than ``real`` standing in for the generated ones, as many as them (the
    caller picks them: other images of the same classes); the same four scores of the control against ``real``
    are added as ``frechet_distance_floor``, ``kernel_distance_floor``, ``precision_ceiling`` and
    ``recall_ceiling``: what a generator that draws exactly from the data scores at these sizes. The Fréchet
    distance is biased upwards at small sizes, and precision and recall saturate below 1: a score, or a
    difference between two models, means something only beside that floor (the kernel distance's floor is 0
    in expectation; its value shows the estimate's noise)."""
    scores = _quality_scores(reference, real, generated, max_points)
    if control is not None:
        if len(control) != len(generated):
            raise UserError(f"the real-vs-real floor needs as many control images as generated ones, got "
                            f"{len(control)} and {len(generated)}")
        floor = _quality_scores(reference, real, control, max_points)
        scores.update({FLOORS[name]: value for name, value in floor.items()})
    return scores


def control_images(x: Tensor, labels: Tensor, conditions: Tensor, n: int) -> Tensor:
    """For each condition (a class, or an attribute vector) in order, the first ``n`` images whose label is that
    condition: the real stand-in for ``n`` samples of each in :func:`sample_quality`'s floor."""
    parts = [x[(labels == condition).reshape(len(labels), -1).all(1)][:n] for condition in conditions]
    short = [i for i, part in enumerate(parts) if len(part) < n]
    if short:
        raise UserError(f"the real-vs-real floor needs {n} other real images of each condition; {len(short)} of "
                        f"{len(conditions)} have fewer (lower --n-per-class)")
    return torch.cat(parts)


@torch.no_grad()
def class_sample_quality(model: ConditionalModel, reference: nn.Module, real_x: Tensor, n_per_class: int = 100,
                         control: tuple[Tensor, Tensor] | None = None) -> dict:
    """The :func:`sample_quality` of label-conditioned samples (n per class, z ~ p(z|y), the mean of p(x|z,y))
    against the real images ``real_x``, with its floor where ``control`` (images and labels other than
    ``real_x``, e.g. the training split, with n of each class) gives n real images of each class in their
    place. No per-class distance: with one class's few images the Fréchet distance between two real sets is
    mostly its estimator's bias."""
    require_image_decoder(model, "the Fréchet distance of samples")
    model.eval()
    classes = torch.arange(model.y_dim)
    samples = torch.cat([s for _, s in samples_for(model, classes, n_per_class)])  # class-major
    stand_in = None if control is None else control_images(*control, classes, n_per_class)
    return sample_quality(reference, real_x, samples, stand_in)


@torch.no_grad()
def attribute_sample_quality(model: ConditionalModel, reference: nn.Module, real_x: Tensor, combinations: Tensor,
                             n_per_combination: int = 20) -> dict[str, float]:
    """The :func:`sample_quality` of samples for the given attribute combinations (n each) against real images
    of them (no floor: a data set rarely has n other real images of every combination; the kernel distance is
    unbiased without one)."""
    require_image_decoder(model, "the Fréchet distance of samples")
    model.eval()
    samples = torch.cat([s for _, s in samples_for(model, combinations, n_per_combination)])
    return sample_quality(reference, real_x, samples)


@torch.no_grad()
def completion_diversity(model: ConditionalModel, x: Tensor, y: Tensor, n_samples: int = 16,
                         complete=None, reference: nn.Module | None = None, temperature: float = 1.0,
                         control: tuple[Tensor, Tensor] | None = None) -> dict:
    """Several outputs per input of a predictive model (CVAE-3, GSNN, hybrid; the baseline's are all equal): the
    means of p(y|x,z) for ``n_samples`` draws z ~ p(z|x), scored against the truth y and against each other.

    ``best_of_s_error`` / ``mean_error``: the per-input minimum / mean over draws of the mean squared error to
    the truth; ``pairwise_distance``: the root-mean-square distance between two draws of one input, averaged over
    the pairs; with ``complete`` (inputs and outputs -> images) and a ``reference`` classifier,
    ``distinct_classes``: how many classes the reference sees among an input's draws (mean over inputs), and
    ``distinct_classes_ambiguous``: the same over the ``ambiguous_inputs``, those whose class the reference
    cannot tell from the input alone (its top probability below 0.5), and the :func:`sample_quality` of the first
    draw's completed images against the true ones, with its floor where ``control`` (inputs and outputs of other
    examples, at least as many) gives as many other real images (a seeded random pick of them). Means over inputs; ``per_input`` holds each
    input's values.
    """
    if model.target_name != "y" or n_samples < 2:
        raise UserError(f"completion diversity needs a model that predicts y and n_samples >= 2, got "
                        f"{model.model_name} and {n_samples}")
    model.eval()
    rows, completed, true_images = [], [], []
    for xb, yb in zip(batches(x, 100), batches(y, 100)):
        draws = model.sample(xb.to(model.device), n_samples, temperature=temperature).cpu().float()  # (B, S, D)
        errors = ((draws - yb[:, None].float()) ** 2).flatten(2).mean(-1)  # (B, S)
        gaps = torch.cdist(draws.flatten(2), draws.flatten(2)) / draws[0, 0].numel() ** 0.5  # (B, S, S) RMS
        row = {"best_of_s_error": errors.min(1).values, "mean_error": errors.mean(1),
               "pairwise_distance": gaps.sum((1, 2)) / (n_samples * (n_samples - 1))}
        if complete is not None and reference is not None:
            images = torch.cat([complete(xb, draws[:, s]) for s in range(n_samples)])  # draw-major
            classes = reference.classify(images.to(reference.device)).cpu().view(n_samples, len(xb)).T
            row["distinct_classes"] = torch.tensor([float(len(torch.unique(c))) for c in classes])
            top = torch.softmax(reference(xb.to(reference.device)), -1).max(-1).values.cpu()
            row["ambiguous"] = (top < 0.5).float()  # the reference cannot tell the class from the input alone
            completed.append(images[: len(xb)])  # the first draw of each input
            true_images.append(complete(xb, yb))
        rows.append(row)
    per_input = {key: torch.cat([r[key] for r in rows]) for key in rows[0]}
    scores = {key: float(v.mean()) for key, v in per_input.items() if key != "ambiguous"}
    if "ambiguous" in per_input:
        ambiguous = per_input["ambiguous"].bool()
        scores["ambiguous_inputs"] = int(ambiguous.sum())
        scores["distinct_classes_ambiguous"] = float(per_input["distinct_classes"][ambiguous].mean()) \
            if ambiguous.any() else float("nan")
        other = None
        if control is not None:  # a seeded random pick: a split may be sorted by class
            if len(control[0]) < len(x):
                raise UserError(f"the real-vs-real floor needs at least {len(x)} other examples, got {len(control[0])}")
            pick = torch.randperm(len(control[0]), generator=torch.Generator().manual_seed(0))[: len(x)]
            other = complete(control[0][pick], control[1][pick])
        scores.update(sample_quality(reference, torch.cat(true_images), torch.cat(completed), other))
    return {**scores, "n_samples": n_samples, "per_input": {key: v.tolist() for key, v in per_input.items()}}
