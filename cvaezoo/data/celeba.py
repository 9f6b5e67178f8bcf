"""A CelebA-style attribute table and image folder, read from a local path (nothing is downloaded)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from cvaezoo.data.attributes import AttributeData
from cvaezoo.data.base import stratified_split
from cvaezoo.data.images import read_image
from cvaezoo.errors import MissingFileError, UserError


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
        path = self.root / self.image_dir / name
        if not path.is_file():
            raise MissingFileError(f"image {path} listed in {self.attr_file} not found")
        return read_image(path, self.channels, self.image_size)

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
