"""Figures of a trained model, as image tensors (rows, cols, C, H, W): :func:`figures` picks the grids
that make sense for a model from what it declares (what it generates, whether its decoder sees the
condition, what its condition is), so that tools only save them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cvaezoo.attributes import group_slices
from cvaezoo.errors import UserError
from cvaezoo.inference import predict_proba, require_image_decoder
from cvaezoo.models import ConditionalModel


def figures(model: ConditionalModel, datamodule, x: Tensor, y: Tensor, n: int = 8, images: Tensor | None = None) -> dict[str, Tensor]:
    """Every grid that fits the model, by file stem, on real examples (x, y) of the data.

    Image models: reconstruction, interpolation, and analogy (class labels) or one editing grid per attribute
    group (attribute vectors); structured outputs: completions; class predictors: the ``images`` (default x)
    each class gets by argmax p(y|x).
    """
    if model.target_name == "x":
        grids = {"reconstruction": reconstruction_grid(model, x, y),
                 "interpolation": interpolation_grid(model, x, torch.roll(x, 1, 0), y)}
        if model.y_kind == "multihot":
            for group, name in enumerate(datamodule.group_names):
                grids[f"edit_{name}"] = attribute_edit_grid(model, x, y, group, datamodule.attribute_groups)
        elif model.y_kind == "class" and model.decoder_sees_condition:
            grids["analogy"] = analogy_grid(model, x, y)
        return grids
    if model.y_kind != "class":
        return {"completions": completion_grid(model, datamodule, x, y, n)}
    return {"samples": label_grid(model, x if images is None else images, n)}


@torch.no_grad()
def label_grid(model: ConditionalModel, images: Tensor, n_per_class: int = 8, **sample_kwargs) -> Tensor:
    """(classes, n_per_class, C, H, W) images, one row per class label.

    Generative models (target x) draw x from p(x|z,y) (its mean) with z from their prior.
    CVAE-3 generates labels, not images: its rows hold the held-out ``images`` it assigns to each
    class by argmax p(y|x) (blank where fewer than n_per_class were assigned), by its cheapest classifier
    mode (the fewest draws: CVAE-3's prior mean).
    """
    model.eval()
    labels = torch.arange(model.y_dim, device=model.device)
    if model.target_name == "x":
        return model.sample(labels, n_per_class, **sample_kwargs).cpu()
    cheapest = min(model.classifier_methods, key=model.classifier_methods.__getitem__)
    predicted = predict_proba(model, images, method=cheapest).argmax(-1)
    grid = torch.ones(model.y_dim, n_per_class, *images.shape[1:])
    for label in range(model.y_dim):
        chosen = images[predicted == label][:n_per_class]
        grid[label, : len(chosen)] = chosen
    return grid


@torch.no_grad()
def reconstruction_grid(model: ConditionalModel, x: Tensor, y: Tensor) -> Tensor:
    """(N, 2, C, H, W): each x beside the mean of p(x|z,...) at z = the mean of q(z|x,y)."""
    require_image_decoder(model, "reconstruction")
    model.eval()
    x, y = x.to(model.device), y.to(model.device)
    c = model.encode_condition(y)
    recon = model.decode(model.posterior(x, c).mean, c)
    return torch.stack([x, recon], dim=1).cpu()


@torch.no_grad()
def interpolation_grid(model: ConditionalModel, x_a: Tensor, x_b: Tensor, y: Tensor, steps: int = 8) -> Tensor:
    """(N, steps, ...): decode (1-t) z_a + t z_b at fixed y, z_* the posterior means of x_a, x_b given y."""
    require_image_decoder(model, "interpolation")
    model.eval()
    x_a, x_b, y = x_a.to(model.device), x_b.to(model.device), y.to(model.device)
    c = model.encode_condition(y)
    z_a, z_b = model.posterior(x_a, c).mean, model.posterior(x_b, c).mean
    t = torch.linspace(0, 1, steps, device=model.device)[:, None, None]
    z = (1 - t) * z_a + t * z_b  # (steps, N, D)
    frames = model.decode(z.flatten(0, 1), c.repeat(steps, 1))
    return frames.view(steps, len(x_a), *frames.shape[1:]).transpose(0, 1).cpu()


@torch.no_grad()
def analogy_grid(model: ConditionalModel, x: Tensor, y: Tensor) -> Tensor:
    """(N, 1 + C, ...): x, then its style z (posterior mean given its own label) decoded with every label.

    Only for models whose decoder sees y (``decoder_sees_condition``: CVAE-1, CVAE-2).
    """
    require_image_decoder(model, "an analogy grid")
    if not model.decoder_sees_condition:
        raise UserError(f"{model.model_name}'s decoder never sees y, so z cannot be decoded with another label")
    model.eval()
    x, y = x.to(model.device), y.to(model.device)
    z = model.posterior(x, model.encode_condition(y)).mean  # (N, D)
    labels = torch.arange(model.y_dim, device=model.device)
    columns = [model.decode(z, model.encode_condition(labels[i].expand(len(x)))) for i in range(model.y_dim)]
    return torch.stack([x, *columns], dim=1).cpu()


@torch.no_grad()
def attribute_edit_grid(model: ConditionalModel, x: Tensor, y: Tensor, group: int, groups: list[int]) -> Tensor:
    """(N, 1 + k, C, H, W): x, then x with attribute group ``group`` set to each of its k values.

    Models whose decoder sees y (``decoder_sees_condition``: CVAE-1, CVAE-2) keep x's code z (the mean of
    q(z|x,y)) and decode it with the edited y'; a decoder that sees only z (CVAE-4) gets z drawn afresh from p(z|y').
    """
    require_image_decoder(model, "attribute editing")
    model.eval()
    x, y = x.to(model.device), y.to(model.device).float()
    part = group_slices(groups)[group]
    size = part.stop - part.start
    options = torch.eye(size) if size > 1 else torch.tensor([[0.0], [1.0]])  # one-of-k values, or off/on
    resample = not model.decoder_sees_condition
    code = None if resample else model.posterior(x, model.encode_condition(y)).mean  # x's own z, kept for every edit
    columns = [x]
    for option in options.to(model.device):
        edited = y.clone()
        edited[:, part] = option
        c = model.encode_condition(edited)
        columns.append(model.decode(model.prior(None, c).rsample(1)[0] if resample else code, c))
    return torch.stack(columns, dim=1).cpu()


@torch.no_grad()
def attribute_sample_grid(model: ConditionalModel, images: Tensor, attributes: Tensor, n: int = 8) -> Tensor:
    """(N, 1 + n, C, H, W): a real image with each attribute vector, then n samples generated for it."""
    require_image_decoder(model, "attribute-conditioned generation")
    model.eval()
    samples = model.sample(attributes.to(model.device), n).cpu()
    return torch.cat([images[:, None], samples], dim=1)


@torch.no_grad()
def completion_grid(model: ConditionalModel, datamodule, x: Tensor, y: Tensor, n: int = 6) -> Tensor:
    """(N, 2 + n, C, H, W) for structured outputs: the input, the truth, then n completions with y
    drawn from p(y|x,z), z ~ p(z|x) (the means of p(y|x,z)); ``datamodule.complete`` reassembles images."""
    model.eval()
    draws = model.sample(x.to(model.device), n).cpu()  # (N, n, y_dim)
    completions = [datamodule.complete(x, draws[:, i]) for i in range(n)]
    return torch.stack([x, datamodule.complete(x, y), *completions], dim=1)



def summary_grid(model: ConditionalModel, datamodule, n: int = 8) -> Tensor | None:
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
