"""Generated attribute images: one shape whose pixels are a function of 5 discrete attributes (6 in colour)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor

from cvaezoo.data.attributes import AttributeData
from cvaezoo.data.base import check_split_sizes
from cvaezoo.errors import UserError

SHAPE_FACTORS: dict[str, tuple[str, ...]] = {
    "shape": ("square", "circle", "triangle", "cross"),
    "size": ("small", "large"),
    "column": ("left", "centre", "right"),
    "row": ("top", "middle", "bottom"),
    "fill": ("outline", "filled"),
}
#: with ``data.colour=true``, a sixth group: the shape's colour (8-bit values, not 0/1, on a dark grey ground)
COLOURS: dict[str, tuple[int, int, int]] = {"red": (220, 50, 47), "green": (64, 160, 43), "blue": (38, 110, 230),
                                            "yellow": (240, 200, 30)}
BACKGROUND = (24, 24, 24)


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


def factors(colour: bool = False) -> dict[str, tuple[str, ...]]:
    """The attribute groups: SHAPE_FACTORS, and the colour group when drawing in colour."""
    return {**SHAPE_FACTORS, "colour": tuple(COLOURS)} if colour else dict(SHAPE_FACTORS)


def render_shape(values: dict[str, str], image_size: int = 24) -> Tensor:
    """The image of one attribute combination, nothing else affects the pixels: (1, S, S) binary, or with a
    ``colour`` value (3, S, S) 8-bit RGB, the shape in that colour on a dark grey ground."""
    groups = factors("colour" in values)
    unknown = {k: v for k, v in values.items() if k not in groups or v not in groups[k]}
    if unknown or set(values) != set(groups):
        raise UserError(f"render_shape needs one value for each of {groups}, got {values}")
    cell = image_size / 4
    centre_x = cell * (1 + SHAPE_FACTORS["column"].index(values["column"]))
    centre_y = cell * (1 + SHAPE_FACTORS["row"].index(values["row"]))
    radius = cell * (0.6 if values["size"] == "small" else 1.0) - 0.01
    coords = torch.arange(image_size, dtype=torch.float32) + 0.5
    dy, dx = torch.meshgrid(coords - centre_y, coords - centre_x, indexing="ij")
    mask = _shape_mask(values["shape"], dx, dy, radius)
    if values["fill"] == "outline":
        mask = mask & ~_erode(mask)  # a 1-pixel stroke
    if "colour" not in values:
        return mask.float()[None]
    ink, ground = (torch.tensor(c, dtype=torch.float32)[:, None, None] / 255 for c in (COLOURS[values["colour"]], BACKGROUND))
    return torch.where(mask[None], ink, ground)


def combination_vector(indices: Sequence[int]) -> Tensor:
    """Multi-hot vector of one combination, given each factor's value index (six with a colour index)."""
    groups = factors(len(indices) == len(SHAPE_FACTORS) + 1).values()
    parts = [torch.nn.functional.one_hot(torch.tensor(i), len(values)) for i, values in zip(indices, groups)]
    return torch.cat(parts).float()


class Shapes(AttributeData):
    """Generated, seeded images of one shape whose pixels are a function of 5 discrete attributes.

    Attributes (one-hot groups, 14 bits): shape (square, circle, triangle, cross), size (small,
    large), column (left, centre, right), row (top, middle, bottom), fill (outline, filled): 144
    combinations. With ``colour``, a sixth group (red, green, blue, yellow; 18 bits, 576 combinations)
    and 8-bit RGB images. ``heldout`` combinations, chosen with ``split_seed``, never appear in train, val
    or test; the extra split ``unseen`` holds one image of each (for scoring generation on them).
    Examples are combinations drawn uniformly (with ``split_seed``) from the seen ones.
    """

    def __init__(self, split: Sequence[int] = (2000, 200, 200), image_size: int = 24, heldout: int = 12,
                 colour: bool = False, **kwargs):
        super().__init__(split=split, **kwargs)
        if image_size < 12:
            raise UserError(f"data.image_size must be >= 12, got {image_size}")
        self.factors = factors(colour)
        self.pixel_levels = 256 if colour else 2  # black and white, or 8-bit colours
        n_combinations = len(self.all_combinations())
        if not 0 <= heldout <= n_combinations - 1:
            raise UserError(f"data.heldout must lie in [0, {n_combinations - 1}], got {heldout}")
        self.image_size, self.heldout = image_size, heldout
        self.attribute_names = [f"{factor}={value}" for factor, values in self.factors.items() for value in values]
        self.attribute_groups = [len(values) for values in self.factors.values()]
        self.group_names = list(self.factors)

    def all_combinations(self) -> list[tuple[int, ...]]:
        return list(itertools.product(*(range(len(values)) for values in self.factors.values())))

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
        values = {factor: options[i] for (factor, options), i in zip(self.factors.items(), combination)}
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
