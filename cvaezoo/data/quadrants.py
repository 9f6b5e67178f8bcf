"""Sohn et al. (2015)'s MNIST quadrant completion: x is 1, 2 or 3 quadrants of a digit, y the rest.

x keeps the image's shape with the missing quadrants set to 0; y is the vector of the missing
pixels (Bernoulli targets). Quadrants are given in the order bottom-left, top-left, bottom-right
(so 2 quadrants are the left half, and with 3 the top-right quadrant is predicted).
"""

from __future__ import annotations

import torch
from torch import Tensor

from cvaezoo.data.embedded import MNIST5k
from cvaezoo.data.idx import IDXDataModule
from cvaezoo.errors import UserError

# (row half, column half) of each quadrant, in the order they are given
QUADRANT_ORDER = ((1, 0), (0, 0), (1, 1), (0, 1))


def given_mask(height: int, width: int, given_quadrants: int) -> Tensor:
    """(H, W) bool, True on the pixels of the first ``given_quadrants`` quadrants of QUADRANT_ORDER."""
    if given_quadrants not in (1, 2, 3):
        raise UserError(f"data.given_quadrants must be 1, 2 or 3, got {given_quadrants}")
    mask = torch.zeros(height, width, dtype=torch.bool)
    rows, cols = ((slice(0, height // 2), slice(height // 2, height)), (slice(0, width // 2), slice(width // 2, width)))
    for row, col in QUADRANT_ORDER[:given_quadrants]:
        mask[rows[row], cols[col]] = True
    return mask


class QuadrantTask:
    """Mixin for an image data module: serve (given quadrants, missing pixels) instead of (image, label)."""

    y_kind = "vector"

    def __init__(self, *args, given_quadrants: int = 1, **kwargs):
        super().__init__(*args, **kwargs)
        if self.binarize == "dynamic":
            raise UserError("data.binarize=dynamic would binarize x but not y; use threshold or none for quadrants")
        if self.labels_per_class is not None:
            raise UserError("data.labels_per_class does not apply to quadrant completion")
        self.given_quadrants = given_quadrants
        given_mask(2, 2, given_quadrants)  # validates the count early

    def make_pairs(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        mask = given_mask(images.shape[-2], images.shape[-1], self.given_quadrants)
        return images * mask, images[:, :, ~mask].flatten(1)

    def complete(self, x: Tensor, missing: Tensor) -> Tensor:
        """Images (N, C, H, W) from inputs x and missing-pixel vectors (N, C*M), e.g. sampled completions."""
        mask = given_mask(x.shape[-2], x.shape[-1], self.given_quadrants)
        out = x.clone()
        out[:, :, ~mask] = missing.view(len(x), x.shape[1], -1)
        return out


class QuadrantMNIST(QuadrantTask, MNIST5k):
    """Quadrant completion on the embedded 5 000 MNIST digits."""


class QuadrantIDX(QuadrantTask, IDXDataModule):
    """Quadrant completion on MNIST IDX files from a local directory."""
