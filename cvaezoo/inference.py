"""Using a trained model: classifier mode, label-conditioned generation and its accuracy, evaluation of the bound
(the scores of samples in a feature space, with their floors, are :mod:`cvaezoo.sample_quality`).

Shared by the command-line tools (:mod:`cvaezoo.cli`) and the Python API.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy, MulticlassCalibrationError, MulticlassConfusionMatrix

from cvaezoo.attributes import group_matches
from cvaezoo.errors import UserError
from cvaezoo.models import ConditionalModel


def batches(x: Tensor, batch_size: int) -> Iterable[Tensor]:
    for start in range(0, len(x), batch_size):
        yield x[start : start + batch_size]


# ----- classifier mode ----------------------------------------------------------------------------
@torch.no_grad()
def predict_proba(model: ConditionalModel, x: Tensor, method: str | None = None, samples: int | None = None,
                  batch_size: int = 250) -> Tensor:
    """p(y|x) for every row of x, (N, C), in batches, by the model's classifier mode with these options
    (``method`` and ``samples``: :meth:`~cvaezoo.models.ConditionalModel.classifier_mode`)."""
    model.eval()
    mode = model.classifier_mode(method, samples)  # a bad option fails before the first batch
    return torch.cat([model.predict_proba(b.to(model.device), mode.method, mode.samples or None).cpu()
                      for b in batches(x, batch_size)])


def classification_metrics(probs: Tensor, labels: Tensor, n_bins: int = 15) -> dict:
    """Accuracy, negative log-likelihood (nats; p(true class) floored at 1e-12 so that an underflowed probability
    stays finite), expected calibration error (15 equal-width bins) and confusion matrix."""
    n_classes = probs.shape[1]
    labels = labels.long()
    return {
        "accuracy": float(MulticlassAccuracy(n_classes, average="micro")(probs, labels)),
        "nll": float(-torch.log(probs.gather(1, labels[:, None]).clamp_min(1e-12)).mean()),
        "ece": float(MulticlassCalibrationError(n_classes, n_bins=n_bins, norm="l1")(probs, labels)),
        "confusion_matrix": MulticlassConfusionMatrix(n_classes)(probs, labels).tolist(),
    }


# ----- generation -----------------------------------------------------------------------------------


def distinct_rows(attributes: Tensor) -> Tensor:
    """The distinct attribute vectors (combinations) among the rows, sorted."""
    return torch.unique(attributes, dim=0)


def samples_for(model: ConditionalModel, conditions: Tensor, n: int) -> Iterator[tuple[Tensor, Tensor]]:
    """(a part of ``conditions``, its n samples each as (len(part) * n, ...) on the CPU), about 2000 samples at a
    time: z ~ p(z|y), the mean of p(x|z,y)."""
    for part in batches(conditions, max(1, 2000 // n)):
        yield part, model.sample(part.to(model.device), n).flatten(0, 1).cpu()


@torch.no_grad()
def attribute_generation_accuracy(model: ConditionalModel, reference, combinations: Tensor, n_per_combination: int = 20) -> dict:
    """Score samples generated for each attribute vector with the reference attribute classifier.

    ``attribute_accuracy``: fraction of attribute groups predicted as requested (chance: the mean of
    1/k over one-of-k groups); ``group_accuracy``: that fraction for each group, in the reference's order;
    ``exact_match``: fraction of samples with every group right.
    """
    require_image_decoder(model, "attribute-generation accuracy")
    model.eval()
    hits = []
    for part, samples in samples_for(model, combinations, n_per_combination):
        predicted = reference.classify(samples.to(reference.device)).cpu()
        requested = part.repeat_interleave(n_per_combination, dim=0).cpu()
        hits.append(group_matches(predicted, requested, reference.groups))
    matches = torch.cat(hits).float()
    return {"attribute_accuracy": float(matches.mean()), "group_accuracy": matches.mean(0).tolist(),
            "exact_match": float(matches.all(1).float().mean()), "combinations": len(combinations)}


@torch.no_grad()
def conditional_generation_accuracy(model: ConditionalModel, reference, n_per_class: int = 100) -> dict:
    """Fraction of samples for label y that the reference classifier labels y, per class and overall."""
    require_image_decoder(model, "conditional-generation accuracy")
    model.eval()
    samples = torch.cat([s for _, s in samples_for(model, torch.arange(model.y_dim), n_per_class)])  # class-major
    predicted = reference.classify(samples.to(reference.device)).cpu().view(model.y_dim, n_per_class)
    hits = (predicted == torch.arange(model.y_dim)[:, None]).float()
    return {"overall": float(hits.mean()), "per_class": hits.mean(1).tolist()}


@torch.no_grad()
def prior_calibration(model: ConditionalModel, x: Tensor, y: Tensor) -> Tensor:
    """Per latent dimension, the mean over examples of E_q(z|x,y)[(z - mu_p)^2 / sigma_p^2] = ((mu_q - mu_p)^2 +
    sigma_q^2) / sigma_p^2: about 1 where the prior p(z|...) spreads as widely as the posteriors of these data,
    above 1 where it is overconfident (the codes of the truth lie further out than the prior's draws)."""
    model.eval()
    totals = torch.zeros(model.latent_dim)
    for xb, yb in zip(batches(x, 500), batches(y, 500)):
        _, q, p = model.posterior_and_prior(xb.to(model.device), yb.to(model.device))
        totals += (((q.mean - p.mean) ** 2 + q.std**2) / p.std**2).sum(0).cpu()
    return totals / len(x)


# ----- evaluation of the bound ---------------------------------------------------------------------
@torch.no_grad()
def evaluate_bound(model: ConditionalModel, x: Tensor, y: Tensor, iwae_samples: int = 100, batch_size: int = 100) -> dict:
    """Means over examples of each ELBO term (one posterior draw) and the importance-weighted bound with K =
    ``iwae_samples`` (nats), as ``elbo``, ``recon``, ``kl`` and ``iwae_k{K}``.

    Predictive models (CVAE-3, GSNN, hybrid, baseline) add ``cnll_s{K}``: -log p(y|x) estimated with K importance
    samples by ``model.conditional_log_likelihood``. A model without a latent (the baseline) has the exact
    log-likelihood, which every bound and estimate equals.
    """
    model.eval()
    k = iwae_samples
    predictive = model.target_name == "y"  # CVAE-3, GSNN, hybrid, baseline
    sums = {"elbo": 0.0, "recon": 0.0, "kl": 0.0, f"iwae_k{k}": 0.0, **({f"cnll_s{k}": 0.0} if predictive else {})}
    for xb, yb in zip(batches(x, batch_size), batches(y, batch_size)):
        xb, yb = xb.to(model.device), yb.to(model.device)
        terms = model.elbo_terms(xb, yb, samples=1) if model.has_latent else model.elbo_terms(xb, yb)
        sums["elbo"] += float(terms.elbo.sum())
        sums["recon"] += float(terms.recon.sum())
        sums["kl"] += float(terms.kl.sum())
        sums[f"iwae_k{k}"] += float((model.iwae_bound(xb, yb, k) if model.has_latent else terms.elbo).sum())
        if predictive:
            log_lik = model.conditional_log_likelihood(xb, yb, samples=k) if model.has_latent else terms.elbo
            sums[f"cnll_s{k}"] -= float(log_lik.sum())
    result = {name: total / len(x) for name, total in sums.items()}
    if model.likelihood.reports_bits_per_dim:  # 8-bit data: the same bounds in bits per dimension
        result.update({f"bpd_{name}": model.bits_per_dim(result[name]) for name in ("elbo", f"iwae_k{k}")})
    return result


def require_image_decoder(model: ConditionalModel, what: str) -> None:
    if model.target_name != "x":
        raise UserError(f"{what} needs a model that generates x; {model.model_name} generates y")
