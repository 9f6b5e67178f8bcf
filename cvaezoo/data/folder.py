"""Your own images: class subfolders, or a CSV/TSV table of file names with a label column or attribute columns."""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from cvaezoo.data.attributes import AttributeData
from cvaezoo.data.images import image_files, pixel_levels, read_images
from cvaezoo.errors import MissingFileError, UserError

TRUE_VALUES, FALSE_VALUES = {"1", "true", "yes"}, {"0", "-1", "false", "no"}
INTEGER = re.compile(r"[+-]?[0-9]+")


def class_labels(cells: Sequence[str], where: str, column: str) -> tuple[list[str], list[str]]:
    """(each row's class name, the class names in order) from a table's label ``column``: stripped of
    whitespace; when every label is an integer the classes are the numbers, written plainly (" 3", "03" and
    "3" are one class "3") and ordered by value (2 before 10), otherwise the strings in sorted order."""
    labels = [cell.strip() for cell in cells]
    if "" in labels:
        raise UserError(f"{where}, line {labels.index('') + 2}: empty label in column {column!r}")
    if all(INTEGER.fullmatch(label) for label in labels):
        numbers = [int(label) for label in labels]
        return [str(n) for n in numbers], class_order([str(n) for n in numbers])
    return labels, class_order(labels)


def class_order(names: Sequence[str]) -> list[str]:
    """The distinct class names in class-index order: by value when every name is an integer (2 before 10),
    otherwise sorted as strings. Subfolder names and table labels follow this one rule."""
    distinct = set(names)
    if all(INTEGER.fullmatch(name) for name in distinct):
        return sorted(distinct, key=lambda name: (int(name), name))  # "2" and "02" in a fixed order
    return sorted(distinct)


class ImageFolder(AttributeData):
    """Images read with Pillow from ``root``, in one of two layouts.

    * class subfolders: ``root/<class>/<image>`` (any depth below the class folder); the classes are the
      folder names, in :func:`class_order` (by value when all are integers), so y is a class label;
    * a table (``table``: a .csv, or a .tsv with tabs) with a ``file_column`` (paths relative to ``root``) and
      either a ``label_column`` (class names, stripped of whitespace; y is a class label; integers are ordered
      as numbers, other labels as strings: :func:`class_labels`) or ``attribute_columns`` (0/1, -1/1 or
      true/false; y is a multi-hot vector of free binary attributes).

    Images are grey or RGB (``channels`` null: grey when every image is), of their own common size or, with
    ``image_size``, centre-cropped and resized to image_size x image_size, each mode on its own scale
    (:func:`cvaezoo.data.images.read_image`); ``pixel_levels`` is 256 when every pixel is an 8-bit value,
    else 65536 (16-bit or float images), which picks the default likelihood. ``split``: three counts or
    fractions (default 80/10/10 %), stratified by class. Everything is held in memory.
    """

    y_kind = "class"

    def __init__(self, root: str, table: str | None = None, file_column: str = "file", label_column: str = "label",
                 attribute_columns: Sequence[str] | None = None, image_size: int | None = None,
                 channels: int | None = None, split: Sequence[float] = (0.8, 0.1, 0.1), **kwargs):
        super().__init__(split=split, **kwargs)
        if root is None or str(root) in ("", "???"):
            raise UserError("data.root must name the image folder (class subfolders, or the folder of data.table)")
        self.root = Path(root).expanduser()
        self.table, self.file_column, self.label_column = table, file_column, label_column
        self.attribute_columns = list(attribute_columns) if attribute_columns else None
        self.image_size, self.channels = image_size, channels
        if self.attribute_columns:
            self.y_kind = "multihot"
        self.class_names: list[str] = []
        self.attribute_names: list[str] = []
        self.attribute_groups: list[int] = []
        self.group_names: list[str] = []

    def _from_subfolders(self) -> tuple[list[Path], list[str]]:
        if not self.root.is_dir():
            raise MissingFileError(f"image folder {self.root} not found (data.root)")
        classes = class_order([d.name for d in self.root.iterdir() if d.is_dir() and not d.name.startswith(".")])
        if not classes:
            raise UserError(f"{self.root} has no class subfolders: expected {self.root}/<class>/<image>.png "
                            "(or set data.table to a CSV of file names and labels)")
        files, labels = [], []
        for name in classes:
            found = image_files(self.root / name)
            if not found:
                raise UserError(f"class folder {self.root / name} holds no images")
            files += found
            labels += [name] * len(found)
        return files, labels

    def _read_table(self) -> tuple[list[Path], list[dict[str, str]]]:
        path = self.root / self.table
        if not path.is_file():
            raise MissingFileError(f"table {path} not found (data.root={self.root}, data.table={self.table})")
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ","))
        columns = [self.file_column, *(self.attribute_columns or [self.label_column])]
        missing = [c for c in columns if rows and c not in rows[0]]
        if not rows or missing:
            raise UserError(f"{path}: needs a header and rows with the columns {columns}; "
                            f"{'it has no rows' if not rows else f'missing {missing}, it has {list(rows[0])}'}")
        return [self.root / row[self.file_column] for row in rows], rows

    def _attribute_matrix(self, rows: list[dict[str, str]]) -> Tensor:
        values = []
        for number, row in enumerate(rows, start=2):
            cells = [row[c].strip().lower() for c in self.attribute_columns]
            bad = [c for c in cells if c not in TRUE_VALUES | FALSE_VALUES]
            if bad:
                raise UserError(f"{self.root / self.table}, line {number}: attribute values must be 0/1, -1/1 or "
                                f"true/false, got {bad}")
            values.append([1.0 if c in TRUE_VALUES else 0.0 for c in cells])
        return torch.tensor(values)

    def load(self) -> tuple[Tensor, Tensor]:
        if self.table is None:
            files, names = self._from_subfolders()
            self.class_names = class_order(names)
        else:
            files, rows = self._read_table()
            if not self.attribute_columns:
                names, self.class_names = class_labels([row[self.label_column] for row in rows],
                                                       str(self.root / self.table), self.label_column)
        if self.attribute_columns:
            labels = self._attribute_matrix(rows)
            self.attribute_names = self.group_names = list(self.attribute_columns)
            self.attribute_groups = [1] * len(self.attribute_columns)
        else:
            self.num_classes = len(self.class_names)
            if self.num_classes < 2:
                raise UserError(f"{self.root}: found one class ({self.class_names}); a conditional model needs two or more")
            labels = torch.tensor([self.class_names.index(n) for n in names])
        images = read_images(files, self.channels, self.image_size)
        self.pixel_levels = pixel_levels(images)  # 16-bit or float images are not scored as 8-bit ones
        return images, labels
