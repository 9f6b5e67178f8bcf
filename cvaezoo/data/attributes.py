"""Multi-hot attribute conditions: a generated shapes dataset and a CelebA-style folder reader.

y is a 0/1 vector of attributes, grouped: a group of size k > 1 is one-of-k (exactly one bit set,
e.g. the shape), a group of size 1 is a free binary attribute (CelebA's "Smiling").
``attribute_groups`` and ``attribute_names`` describe the layout to models, the reference
attribute classifier and the scoring of generated samples.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from cvaezoo.data.base import TensorDataModule, check_split_sizes, stratified_split
from cvaezoo.errors import MissingFileError, UserError


class AttributeData(TensorDataModule):
    """Base for data whose y is a multi-hot attribute vector."""

    y_kind = "multihot"
    attribute_names: list[str]  # one per bit of y
    attribute_groups: list[int]  # sizes of consecutive groups of bits
    group_names: list[str]  # one per group

    def attribute_vector(self, text: str) -> Tensor:
        """Parse "name,name,..." (the attributes that are on) into a 0/1 vector, checking every group."""
        self.setup()
        wanted = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in wanted if name not in self.attribute_names]
        if unknown:
            raise UserError(f"unknown attributes {unknown}; known: {self.attribute_names}")
        vector = torch.zeros(len(self.attribute_names))
        vector[[self.attribute_names.index(name) for name in wanted]] = 1.0
        for name, part in zip(self.group_names, group_slices(self.attribute_groups)):
            if part.stop - part.start > 1 and vector[part].sum() != 1:
                options = self.attribute_names[part]
                raise UserError(f"{text!r} must set exactly one of {options} (attribute group {name!r})")
        return vector


# ----- the generated dataset ------------------------------------------------------------------------
SHAPE_FACTORS: dict[str, tuple[str, ...]] = {
    "shape": ("square", "circle", "triangle", "cross"),
    "size": ("small", "large"),
    "column": ("left", "centre", "right"),
    "row": ("top", "middle", "bottom"),
    "fill": ("outline", "filled"),
}


def _shape_mask(shape: str, dx: Tensor, dy: Tensor, radius: float) -> Tensor:
    if shape == "square":
        return (dx.abs() <= radius) & (dy.abs() <= radius)
    if shape == "circle":
        return dx**2 + dy**2 <= radius**2
    if shape == "triangle":  # apex up, base at the bottom
        return (dy >= -radius) & (dy <= radius) & (dx.abs() <= (dy + radius) / 2)
    arm = radius / 2  # cross
    return ((dx.abs() <= arm) & (dy.abs() <= radius)) | ((dy.abs() <= arm) & (dx.abs() <= radius))


def _erode(mask: Tensor) -> Tensor:
    """Pixels whose 4 neighbours are all inside the mask."""
    padded = torch.nn.functional.pad(mask.float()[None, None], (1, 1, 1, 1))[0, 0].bool()
    return mask & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]


def render_shape(values: dict[str, str], image_size: int = 24) -> Tensor:
    """The (1, S, S) binary image of one attribute combination; nothing else affects the pixels."""
    unknown = {k: v for k, v in values.items() if k not in SHAPE_FACTORS or v not in SHAPE_FACTORS[k]}
    if unknown or set(values) != set(SHAPE_FACTORS):
        raise UserError(f"render_shape needs one value for each of {SHAPE_FACTORS}, got {values}")
    cell = image_size / 4
    centre_x = cell * (1 + SHAPE_FACTORS["column"].index(values["column"]))
    centre_y = cell * (1 + SHAPE_FACTORS["row"].index(values["row"]))
    radius = cell * (0.6 if values["size"] == "small" else 1.0) - 0.01
    coords = torch.arange(image_size, dtype=torch.float32) + 0.5
    dy, dx = torch.meshgrid(coords - centre_y, coords - centre_x, indexing="ij")
    mask = _shape_mask(values["shape"], dx, dy, radius)
    if values["fill"] == "outline":
        mask = mask & ~_erode(mask)  # a 1-pixel stroke
    return mask.float()[None]


def combination_vector(indices: Sequence[int]) -> Tensor:
    """Multi-hot vector of one combination, given each factor's value index."""
    parts = [torch.nn.functional.one_hot(torch.tensor(i), len(values)) for i, values in zip(indices, SHAPE_FACTORS.values())]
    return torch.cat(parts).float()


class Shapes(AttributeData):
    """Generated, seeded images of one shape whose pixels are a function of 5 discrete attributes.

    Attributes (one-hot groups, 14 bits): shape (square, circle, triangle, cross), size (small,
    large), column (left, centre, right), row (top, middle, bottom), fill (outline, filled): 144
    combinations. ``heldout`` combinations, chosen with ``split_seed``, never appear in train, val
    or test; the extra split ``unseen`` holds one image of each (for scoring generation on them).
    Examples are combinations drawn uniformly (with ``split_seed``) from the seen ones.
    """

    pixel_levels = 2  # drawn in black and white

    def __init__(self, split: Sequence[int] = (2000, 200, 200), image_size: int = 24, heldout: int = 12, **kwargs):
        super().__init__(split=split, **kwargs)
        if image_size < 12:
            raise UserError(f"data.image_size must be >= 12, got {image_size}")
        n_combinations = len(self.all_combinations())
        if not 0 <= heldout <= n_combinations - 1:
            raise UserError(f"data.heldout must lie in [0, {n_combinations - 1}], got {heldout}")
        self.image_size, self.heldout = image_size, heldout
        self.attribute_names = [f"{factor}={value}" for factor, values in SHAPE_FACTORS.items() for value in values]
        self.attribute_groups = [len(values) for values in SHAPE_FACTORS.values()]
        self.group_names = list(SHAPE_FACTORS)

    @staticmethod
    def all_combinations() -> list[tuple[int, ...]]:
        return list(itertools.product(*(range(len(values)) for values in SHAPE_FACTORS.values())))

    def heldout_combinations(self) -> list[tuple[int, ...]]:
        """The combinations kept out of training, chosen with split_seed."""
        combinations = self.all_combinations()
        generator = torch.Generator().manual_seed(self.split_seed)
        chosen = torch.randperm(len(combinations), generator=generator)[: self.heldout]
        return [combinations[i] for i in sorted(chosen.tolist())]

    def seen_combinations(self) -> list[tuple[int, ...]]:
        heldout = set(self.heldout_combinations())
        return [c for c in self.all_combinations() if c not in heldout]

    def render(self, combination: Sequence[int]) -> Tensor:
        values = {factor: options[i] for (factor, options), i in zip(SHAPE_FACTORS.items(), combination)}
        return render_shape(values, self.image_size)

    def _examples(self, combinations: Sequence[tuple[int, ...]]) -> tuple[Tensor, Tensor]:
        return torch.stack([self.render(c) for c in combinations]), torch.stack([combination_vector(c) for c in combinations])

    def load_splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        sizes = check_split_sizes(self.split)
        seen = self.seen_combinations()
        generator = torch.Generator().manual_seed(self.split_seed + 1)
        unique_images, unique_vectors = self._examples(seen)
        splits = {}
        for name, size in zip(("train", "val", "test"), sizes):
            draw = torch.randint(len(seen), (size,), generator=generator)
            splits[name] = (unique_images[draw], unique_vectors[draw])
        if self.heldout:
            splits["unseen"] = self._examples(self.heldout_combinations())
        return splits


# ----- CelebA-style folders --------------------------------------------------------------------------
class AttributeFolder(AttributeData):
    """Images and binary attributes in the layout of CelebA, read from a local directory.

    ``root`` holds ``attr_file`` (line 1: the number of images; line 2: the attribute names; then
    one line per image: file name and one value per attribute, 1 or -1) and the images in
    ``image_dir``. Images are converted to grey (``channels: 1``) or RGB (3), centre-cropped to a
    square and resized to ``image_size``. ``attributes`` selects columns by name (default: all),
    ``limit`` reads only the first N images. With ``partition_file`` (CelebA's
    list_eval_partition.txt: file name, then 0/1/2 for train/val/test) its splits are used;
    otherwise a random ``split``. Nothing is downloaded.
    """

    def __init__(
        self,
        root: str,
        attr_file: str = "list_attr_celeba.txt",
        image_dir: str = "img_align_celeba",
        partition_file: str | None = None,
        attributes: Sequence[str] | None = None,
        image_size: int = 32,
        channels: int = 3,
        limit: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if channels not in (1, 3):
            raise UserError(f"data.channels must be 1 or 3, got {channels}")
        if image_size <= 0 or (limit is not None and limit <= 0):
            raise UserError(f"data.image_size and data.limit must be positive, got {image_size}, {limit}")
        self.root, self.attr_file, self.image_dir = Path(root).expanduser(), attr_file, image_dir
        self.partition_file, self.selected = partition_file, list(attributes) if attributes else None
        self.image_size, self.channels, self.limit = image_size, channels, limit
        self.attribute_names: list[str] = []
        self.attribute_groups: list[int] = []
        self.group_names: list[str] = []

    def read_attributes(self) -> tuple[list[str], list[str], Tensor]:
        """(file names, attribute names, 0/1 matrix (N, A)) from the attribute file."""
        path = self.root / self.attr_file
        if not path.is_file():
            raise MissingFileError(f"attribute file {path} not found (data.root={self.root}, data.attr_file={self.attr_file})")
        lines = path.read_text().splitlines()
        if len(lines) < 3:
            raise UserError(f"{path}: expected a count line, a header of attribute names and one line per image")
        names = lines[1].split()
        files, rows = [], []
        for number, line in enumerate(lines[2:], start=3):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != len(names) + 1:
                raise UserError(f"{path}, line {number}: {len(parts) - 1} values for {len(names)} attributes")
            values = [int(v) for v in parts[1:]]
            if any(v not in (-1, 1, 0) for v in values):
                raise UserError(f"{path}, line {number}: attribute values must be 1 or -1 (or 0), got {sorted(set(values))}")
            files.append(parts[0])
            rows.append([1 if v == 1 else 0 for v in values])
            if self.limit is not None and len(files) == self.limit:
                break
        matrix = torch.tensor(rows, dtype=torch.float32)
        if self.selected is not None:
            unknown = [a for a in self.selected if a not in names]
            if unknown:
                raise UserError(f"data.attributes {unknown} are not in {path}; it has {names}")
            matrix = matrix[:, [names.index(a) for a in self.selected]]
            names = list(self.selected)
        return files, names, matrix

    def read_image(self, name: str) -> Tensor:
        from PIL import Image

        path = self.root / self.image_dir / name
        if not path.is_file():
            raise MissingFileError(f"image {path} listed in {self.attr_file} not found")
        with Image.open(path) as picture:
            picture = picture.convert("L" if self.channels == 1 else "RGB")
            side = min(picture.size)
            left, top = (picture.width - side) // 2, (picture.height - side) // 2
            picture = picture.crop((left, top, left + side, top + side)).resize((self.image_size, self.image_size), Image.BILINEAR)
            array = np.asarray(picture, dtype=np.float32) / 255.0
        return torch.from_numpy(array.reshape(self.image_size, self.image_size, self.channels)).permute(2, 0, 1)

    def load(self) -> tuple[Tensor, Tensor]:
        files, self.attribute_names, attributes = self.read_attributes()
        self.attribute_groups = [1] * len(self.attribute_names)
        self.group_names = list(self.attribute_names)
        self.files = files
        return torch.stack([self.read_image(f) for f in files]), attributes

    def load_splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        images, attributes = self.load()
        if self.partition_file is None:
            parts = stratified_split(attributes.numpy(), self.split, self.split_seed)
            return {name: (images[idx], attributes[idx]) for name, idx in zip(("train", "val", "test"), parts)}
        path = self.root / self.partition_file
        if not path.is_file():
            raise MissingFileError(f"partition file {path} not found (data.partition_file)")
        partition = dict(line.split() for line in path.read_text().splitlines() if line.strip())
        missing = [f for f in self.files if f not in partition]
        if missing:
            raise UserError(f"{path} has no partition for {missing[:3]}")
        which = torch.tensor([int(partition[f]) for f in self.files])
        return {name: (images[which == i], attributes[which == i]) for i, name in enumerate(("train", "val", "test"))}


# ----- grouped attribute vectors --------------------------------------------------------------------
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
