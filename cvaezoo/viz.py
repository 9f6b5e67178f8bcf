"""Image grids written with numpy and Pillow (torchvision is not a dependency)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from cvaezoo.errors import UserError


def to_uint8(image: Tensor) -> np.ndarray:
    """One (C, H, W) image in [0, 1] as a uint8 array, (H, W) for grey or (H, W, 3), as Pillow takes it."""
    array = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return array[..., 0] if array.shape[2] == 1 else array


def image_grid(images: Tensor, padding: int = 2, pad_value: float = 1.0) -> np.ndarray:
    """(rows, cols, C, H, W) values in [0, 1] -> one uint8 array (rows*(H+p)+p, cols*(W+p)+p[, 3])."""
    if images.dim() != 5:
        raise UserError(f"image_grid expects (rows, cols, C, H, W), got {tuple(images.shape)}")
    rows, cols, channels, height, width = images.shape
    if channels not in (1, 3):
        raise UserError(f"image_grid draws 1- or 3-channel images, got {channels} channels")
    grid = torch.full((channels, rows * (height + padding) + padding, cols * (width + padding) + padding), pad_value)
    for r in range(rows):
        for c in range(cols):
            top, left = padding + r * (height + padding), padding + c * (width + padding)
            grid[:, top : top + height, left : left + width] = images[r, c]
    return to_uint8(grid)


def save_image_grid(images: Tensor, path: str | Path, scale: int = 2) -> Path:
    """Save (rows, cols, C, H, W) images as a PNG, each pixel enlarged ``scale`` times."""
    array = image_grid(images.detach().float().cpu())
    picture = Image.fromarray(array)
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)
    return path


def save_images(images: Tensor, folder: str | Path, names: list[str]) -> list[Path]:
    """Save (N, C, H, W) images in [0, 1] as one PNG each, at their own size: ``folder/<name>.png``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for image, name in zip(images.detach().float().cpu(), names):
        paths.append(folder / f"{name}.png")
        Image.fromarray(to_uint8(image)).save(paths[-1])
    return paths
