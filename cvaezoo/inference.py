"""Using a trained model: classifier mode, label-conditioned generation, evaluation of the bound.

Shared by the command-line tools (:mod:`cvaezoo.cli`) and the Python API.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy, MulticlassCalibrationError, MulticlassConfusionMatrix

from cvaezoo.data.attributes import group_matches, group_slices
from cvaezoo.errors import UserError
from cvaezoo.models.base import ConditionalVAE


def _batches(x: Tensor, batch_size: int) -> Iterable[Tensor]:
    for start in range(0, len(x), batch_size):
        yield x[start : start + batch_size]


# ----- classifier mode ----------------------------------------------------------------------------
@torch.no_grad()
def predict_proba(model: ConditionalVAE, x: Tensor, batch_size: int = 250, **kwargs) -> Tensor:
    """p(y|x) for every row of x, (N, C), in batches (kwargs go to ``model.predict_proba``)."""
    model.eval()
    return torch.cat([model.predict_proba(b.to(model.device), **kwargs).cpu() for b in _batches(x, batch_size)])


def classification_metrics(probs: Tensor, labels: Tensor, n_bins: int = 15) -> dict:
    """Accuracy, negative log-likelihood (nats), expected calibration error and confusion matrix."""
    n_classes = probs.shape[1]
    labels = labels.long()
    return {
        "accuracy": float(MulticlassAccuracy(n_classes, average="micro")(probs, labels)),
        "nll": float(-torch.log(probs.gather(1, labels[:, None]).clamp_min(1e-12)).mean()),
        "ece": float(MulticlassCalibrationError(n_classes, n_bins=n_bins, norm="l1")(probs, labels)),
        "confusion_matrix": MulticlassConfusionMatrix(n_classes)(probs, labels).tolist(),
    }


# ----- generation -----------------------------------------------------------------------------------
@torch.no_grad()
def label_grid(model: ConditionalVAE, images: Tensor, n_per_class: int = 8, **sample_kwargs) -> Tensor:
    """(classes, n_per_class, C, H, W) images, one row per class label.

    Generative models (target x) draw x from p(x|z,y) (its mean) with z from their prior.
    CVAE-3 generates labels, not images: its rows hold the held-out ``images`` it assigns to each
    class by argmax p(y|x) (blank where fewer than n_per_class were assigned).
    """
    model.eval()
    labels = torch.arange(model.y_dim, device=model.device)
    if model.target_name == "x":
        return model.sample(labels, n_per_class, **sample_kwargs).cpu()
    predicted = predict_proba(model, images).argmax(-1)
    grid = torch.ones(model.y_dim, n_per_class, *images.shape[1:])
    for label in range(model.y_dim):
        chosen = images[predicted == label][:n_per_class]
        grid[label, : len(chosen)] = chosen
    return grid


@torch.no_grad()
def completion_grid(model: ConditionalVAE, datamodule, x: Tensor, y: Tensor, n: int = 6) -> Tensor:
    """(N, 2 + n, C, H, W) for structured outputs: the input, the truth, then n completions with y
    drawn from p(y|x,z), z ~ p(z|x) (the means of p(y|x,z)); ``datamodule.complete`` reassembles images."""
    model.eval()
    draws = model.sample(x.to(model.device), n).cpu()  # (N, n, y_dim)
    completions = [datamodule.complete(x, draws[:, i]) for i in range(n)]
    return torch.stack([x, datamodule.complete(x, y), *completions], dim=1)


@torch.no_grad()
def attribute_sample_grid(model: ConditionalVAE, images: Tensor, attributes: Tensor, n: int = 8) -> Tensor:
    """(N, 1 + n, C, H, W): a real image with each attribute vector, then n samples generated for it."""
    _require_image_decoder(model, "attribute-conditioned generation")
    model.eval()
    samples = model.sample(attributes.to(model.device), n).cpu()
    return torch.cat([images[:, None], samples], dim=1)


def distinct_rows(attributes: Tensor) -> Tensor:
    """The distinct attribute vectors (combinations) among the rows, sorted."""
    return torch.unique(attributes, dim=0)


@torch.no_grad()
def attribute_generation_accuracy(model: ConditionalVAE, reference, combinations: Tensor, n_per_combination: int = 20) -> dict:
    """Score samples generated for each attribute vector with the reference attribute classifier.

    ``attribute_accuracy``: fraction of attribute groups predicted as requested (chance: the mean of
    1/k over one-of-k groups); ``exact_match``: fraction of samples with every group right.
    """
    _require_image_decoder(model, "attribute-generation accuracy")
    model.eval()
    hits = []
    for part in _batches(combinations, max(1, 2000 // n_per_combination)):
        samples = model.sample(part.to(model.device), n_per_combination).flatten(0, 1)
        predicted = reference.classify(samples.to(reference.device)).cpu()
        requested = part.repeat_interleave(n_per_combination, dim=0).cpu()
        hits.append(group_matches(predicted, requested, reference.groups))
    matches = torch.cat(hits).float()
    return {"attribute_accuracy": float(matches.mean()), "exact_match": float(matches.all(1).float().mean()),
            "combinations": len(combinations)}


@torch.no_grad()
def attribute_edit_grid(model: ConditionalVAE, x: Tensor, y: Tensor, group: int, groups: list[int]) -> Tensor:
    """(N, 1 + k, C, H, W): x, then x with attribute group ``group`` set to each of its k values.

    Models whose decoder sees y (CVAE-1, CVAE-2) keep x's code z (the mean of q(z|x,y)) and decode
    it with the edited y'; CVAE-4's decoder sees only z, so z is drawn afresh from p(z|y').
    """
    _require_image_decoder(model, "attribute editing")
    model.eval()
    x, y = x.to(model.device), y.to(model.device).float()
    part = group_slices(groups)[group]
    size = part.stop - part.start
    options = torch.eye(size) if size > 1 else torch.tensor([[0.0], [1.0]])  # one-of-k values, or off/on
    resample = model.model_name == "cvae4"
    code = None if resample else model.posterior(x, model.encode_condition(y)).mean  # x's own z, kept for every edit
    columns = [x]
    for option in options.to(model.device):
        edited = y.clone()
        edited[:, part] = option
        c = model.encode_condition(edited)
        columns.append(model.decode(model.prior(None, c).rsample(1)[0] if resample else code, c))
    return torch.stack(columns, dim=1).cpu()


def summary_grid(model: ConditionalVAE, datamodule, n: int = 8) -> Tensor | None:
    """The figure a run ends with: label rows for class conditions, completions for structured outputs,
    real image + samples for attribute vectors (held-out combinations first, where the data has them)."""
    x, y = datamodule.splits["test"].tensors
    if model.y_kind == "class":
        return label_grid(model, x, n)
    if model.y_kind == "multihot" and model.target_name == "x":
        if "unseen" in datamodule.splits:
            x = torch.cat([datamodule.splits["unseen"].tensors[0], x])
            y = torch.cat([datamodule.splits["unseen"].tensors[1], y])
        return attribute_sample_grid(model, x[:n], y[:n], n)
    if model.target_name == "y" and hasattr(datamodule, "complete"):
        pick = torch.linspace(0, len(x) - 1, n).long()
        return completion_grid(model, datamodule, x[pick], y[pick])
    return None


def _require_image_decoder(model: ConditionalVAE, what: str) -> None:
    if model.target_name != "x":
        raise UserError(f"{what} needs a model that generates x; {model.model_name} generates y")


@torch.no_grad()
def reconstruction_grid(model: ConditionalVAE, x: Tensor, y: Tensor) -> Tensor:
    """(N, 2, C, H, W): each x beside the mean of p(x|z,...) at z = the mean of q(z|x,y)."""
    _require_image_decoder(model, "reconstruction")
    model.eval()
    x, y = x.to(model.device), y.to(model.device)
    c = model.encode_condition(y)
    recon = model.decode(model.posterior(x, c).mean, c)
    return torch.stack([x, recon], dim=1).cpu()


@torch.no_grad()
def analogy_grid(model: ConditionalVAE, x: Tensor, y: Tensor) -> Tensor:
    """(N, 1 + C, ...): x, then its style z (posterior mean given its own label) decoded with every label.

    Only for models whose decoder sees y (CVAE-1, CVAE-2).
    """
    _require_image_decoder(model, "an analogy grid")
    if model.model_name == "cvae4":
        raise UserError("cvae4's decoder never sees y, so z cannot be decoded with another label")
    model.eval()
    x, y = x.to(model.device), y.to(model.device)
    z = model.posterior(x, model.encode_condition(y)).mean  # (N, D)
    labels = torch.arange(model.y_dim, device=model.device)
    columns = [model.decode(z, model.encode_condition(labels[i].expand(len(x)))) for i in range(model.y_dim)]
    return torch.stack([x, *columns], dim=1).cpu()


@torch.no_grad()
def interpolation_grid(model: ConditionalVAE, x_a: Tensor, x_b: Tensor, y: Tensor, steps: int = 8) -> Tensor:
    """(N, steps, ...): decode (1-t) z_a + t z_b at fixed y, z_* the posterior means of x_a, x_b given y."""
    _require_image_decoder(model, "interpolation")
    model.eval()
    x_a, x_b, y = x_a.to(model.device), x_b.to(model.device), y.to(model.device)
    c = model.encode_condition(y)
    z_a, z_b = model.posterior(x_a, c).mean, model.posterior(x_b, c).mean
    t = torch.linspace(0, 1, steps, device=model.device)[:, None, None]
    z = (1 - t) * z_a + t * z_b  # (steps, N, D)
    frames = model.decode(z.flatten(0, 1), c.repeat(steps, 1))
    return frames.view(steps, len(x_a), *frames.shape[1:]).transpose(0, 1).cpu()


@torch.no_grad()
def conditional_generation_accuracy(model: ConditionalVAE, reference, n_per_class: int = 100) -> dict:
    """Fraction of samples for label y that the reference classifier labels y, per class and overall."""
    _require_image_decoder(model, "conditional-generation accuracy")
    samples = label_grid(model, torch.empty(0), n_per_class)  # (C, n, ...)
    n_classes = samples.shape[0]
    predicted = reference.classify(samples.flatten(0, 1).to(reference.device)).cpu().view(n_classes, n_per_class)
    hits = (predicted == torch.arange(n_classes)[:, None]).float()
    return {"overall": float(hits.mean()), "per_class": hits.mean(1).tolist()}


# ----- evaluation of the bound ---------------------------------------------------------------------
@torch.no_grad()
def evaluate_bound(model: ConditionalVAE, x: Tensor, y: Tensor, k: int = 100, batch_size: int = 100) -> dict:
    """Means over examples of each ELBO term and the K-sample importance-weighted bound (nats).

    Predictive models (CVAE-3, GSNN, hybrid, baseline) add ``cnll_s{k}``: -log p(y|x) estimated
    with k importance samples by ``model.conditional_log_likelihood`` (exact for the baseline).
    """
    model.eval()
    predictive = hasattr(model, "conditional_log_likelihood")
    sums = {"elbo": 0.0, "recon": 0.0, "kl": 0.0, f"iwae_k{k}": 0.0, **({f"cnll_s{k}": 0.0} if predictive else {})}
    for xb, yb in zip(_batches(x, batch_size), _batches(y, batch_size)):
        xb, yb = xb.to(model.device), yb.to(model.device)
        terms = model.elbo_terms(xb, yb, n_samples=1)
        sums["elbo"] += float(terms.elbo.sum())
        sums["recon"] += float(terms.recon.sum())
        sums["kl"] += float(terms.kl.sum())
        sums[f"iwae_k{k}"] += float(model.iwae_bound(xb, yb, k).sum())
        if predictive:
            sums[f"cnll_s{k}"] -= float(model.conditional_log_likelihood(xb, yb, samples=k).sum())
    result = {name: total / len(x) for name, total in sums.items()}
    if model.likelihood.reports_bits_per_dim:  # 8-bit data: the same bounds in bits per dimension
        result.update({f"bpd_{name}": model.bits_per_dim(result[name]) for name in ("elbo", f"iwae_k{k}")})
    return result
