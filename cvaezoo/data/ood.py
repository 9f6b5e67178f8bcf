"""Out-of-distribution image sets for a model of 28x28 grey digits, all available offline.

Each set has as many images as the in-distribution images it is built beside, in their shape, in [0, 1]:
``noise`` (uniform), ``inverted`` (1 - x) and ``rotated`` (x turned 90 degrees) from those images,
``digits`` (scikit-learn's 8x8 digits, upsampled), ``shapes`` (the generated Shapes images, resized) and
``fashion_mnist`` (its test images), the last only where a copy is on disk already: nothing is downloaded.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch
import yaml
from torch import Tensor

from cvaezoo.data.download import cache_dir, check_sha256
from cvaezoo.data.embedded import Digits
from cvaezoo.data.idx import find_idx_file, read_idx
from cvaezoo.data.images import to_shape
from cvaezoo.data.shapes import Shapes
from cvaezoo.errors import MissingFileError


def _repeat_to(images: Tensor, n: int) -> Tensor:
    return images.repeat((n + len(images) - 1) // len(images), *[1] * (images.dim() - 1))[:n]


def fashion_mnist_sha256() -> dict[str, str]:
    """The checksums ``data=fashion_mnist`` pins for its files (its packaged config)."""
    text = resources.files("cvaezoo").joinpath("conf/data/fashion_mnist.yaml").read_text()
    return dict(yaml.safe_load(text)["sha256"])


def local_fashion_mnist(root: Path | None = None) -> Tensor | None:
    """Fashion-MNIST's test images, (10000, 1, 28, 28) in [0, 1], from ``root`` (a local copy, read as it is) or
    from the download cache, where ``data=fashion_mnist`` puts them and where the file must match the checksum
    that config pins (an unpinned or damaged copy is refused, not used); None where no copy is there."""
    try:
        path = find_idx_file(root or cache_dir("fashion_mnist"), "t10k-images-idx3-ubyte")
    except MissingFileError:
        return None
    if root is None:
        check_sha256(path, fashion_mnist_sha256(), required=True)
    return torch.tensor(read_idx(path), dtype=torch.float32)[:, None] / 255.0


def ood_sets(x: Tensor, seed: int = 0, fashion_mnist_root: Path | None = None) -> dict[str, Tensor]:
    """The out-of-distribution sets built beside in-distribution images ``x`` (N, C, H, W): N images each."""
    n, shape = len(x), tuple(x.shape[1:])
    generator = torch.Generator().manual_seed(seed)
    digits, _ = Digits().load()
    shapes = Shapes(image_size=shape[-1], split=(n, 1, 1), split_seed=seed).load_splits()["train"][0]
    sets = {
        "noise": torch.rand(n, *shape, generator=generator),
        "inverted": 1.0 - x,
        "rotated": torch.rot90(x, 1, dims=(-2, -1)),
        "digits": to_shape(_repeat_to(digits[torch.randperm(len(digits), generator=generator)], n), shape),
        "shapes": to_shape(shapes, shape),
    }
    fashion = local_fashion_mnist(fashion_mnist_root)
    if fashion is not None:
        sets["fashion_mnist"] = to_shape(fashion[:n], shape)
    return sets
