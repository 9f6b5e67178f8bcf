"""Grouped multi-hot attribute vectors: a group of size k > 1 is one-of-k (exactly one bit set, e.g. the
shape), a group of size 1 a free binary attribute (CelebA's "Smiling"). Used by the data that have
attributes, the reference attribute classifier and the scoring of generated samples.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


def group_slices(groups: Sequence[int]) -> list[slice]:
    starts = np.cumsum([0, *groups])
    return [slice(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:])]


def attributes_from_scores(scores: Tensor, groups: Sequence[int]) -> Tensor:
    """0/1 attribute vectors from logits (B, A): argmax within one-of-k groups, > 0 for binary ones."""
    out = torch.zeros_like(scores)
    for part in group_slices(groups):
        block = scores[:, part]
        if block.shape[1] == 1:
            out[:, part] = (block > 0).to(scores.dtype)
        else:
            out[:, part] = torch.nn.functional.one_hot(block.argmax(1), block.shape[1]).to(scores.dtype)
    return out


def group_matches(predicted: Tensor, target: Tensor, groups: Sequence[int]) -> Tensor:
    """(B, G) bool: whether each attribute group of ``predicted`` equals that of ``target``."""
    return torch.stack([(predicted[:, part] == target[:, part]).all(1) for part in group_slices(groups)], dim=1)


def attribute_loss(scores: Tensor, target: Tensor, groups: Sequence[int]) -> Tensor:
    """Cross-entropy per one-of-k group plus binary cross-entropy per binary attribute, per example."""
    losses = []
    for part in group_slices(groups):
        block, truth = scores[:, part], target[:, part]
        if block.shape[1] == 1:
            losses.append(torch.nn.functional.binary_cross_entropy_with_logits(block[:, 0], truth[:, 0], reduction="none"))
        else:
            losses.append(torch.nn.functional.cross_entropy(block, truth.argmax(1), reduction="none"))
    return torch.stack(losses, dim=1).sum(1)
