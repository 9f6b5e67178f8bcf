"""Using a trained model: the label-conditioned figure written at the end of training."""

from __future__ import annotations

import torch
from torch import Tensor

from cvaezoo.models.base import ConditionalVAE


@torch.no_grad()
def label_grid(model: ConditionalVAE, images: Tensor, n_per_class: int = 8) -> Tensor:
    """(classes, n_per_class, C, H, W) images, one row per class label.

    Generative models (target x) draw x from p(x|z,y) (its mean) with z from their prior.
    CVAE-3 generates labels, not images: its rows hold the held-out ``images`` it assigns to each
    class by argmax p(y|x) (blank where fewer than n_per_class were assigned).
    """
    model.eval()
    labels = torch.arange(model.y_dim, device=model.device)
    if model.target_name == "x":
        return model.sample(labels, n_per_class).cpu()
    images = images.to(model.device)
    predicted = model.classify(images)
    grid = torch.ones(model.y_dim, n_per_class, *images.shape[1:])
    for label in range(model.y_dim):
        chosen = images[predicted == label][:n_per_class].cpu()
        grid[label, : len(chosen)] = chosen
    return grid
