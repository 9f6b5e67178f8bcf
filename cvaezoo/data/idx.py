"""MNIST / Fashion-MNIST from IDX files: a local directory, or downloaded on request (``data=mnist``).

Expected files (each may also be gzipped, with a ``.gz`` suffix):
    train-images-idx3-ubyte  train-labels-idx1-ubyte  t10k-images-idx3-ubyte  t10k-labels-idx1-ubyte
A folder with only the two t10k files serves the test split (to score a trained model on it).
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from cvaezoo.data.base import TensorDataModule, carve_validation
from cvaezoo.data.download import cache_dir, check_sha256, fetch
from cvaezoo.errors import MissingFileError, UserError

IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09}
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


class IDXFormatError(UserError):
    """An IDX file whose header or size is not what the format requires."""


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into an array, checking header against size."""
    path = Path(path)
    with _open(path) as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise IDXFormatError(f"{path}: not an IDX file (magic bytes {raw[:4].hex() or 'missing'}, expected 0000TTNN)")
    dtype, ndim = np.dtype(IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IDXFormatError(f"{path}: truncated header ({len(raw)} bytes, expected at least {header})")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise IDXFormatError(f"{path}: header says shape {shape} ({expected} bytes) but the file has {len(raw)} bytes")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write an unsigned/signed byte array as IDX (gzipped when the name ends in .gz)."""
    array = np.asarray(array)
    if array.dtype not in IDX_CODES:
        raise UserError(f"write_idx supports uint8 and int8 arrays, got {array.dtype}")
    header = bytes([0, 0, IDX_CODES[array.dtype], array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    path = Path(path)
    with (gzip.open(path, "wb") if path.suffix == ".gz" else open(path, "wb")) as f:
        f.write(header + array.tobytes())


def find_idx_file(root: Path, stem: str) -> Path:
    for candidate in (root / stem, root / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    raise MissingFileError(
        f"missing IDX file {stem}[.gz] in {root}. Put the four MNIST/Fashion-MNIST files "
        f"({', '.join(FILES.values())}, optionally .gz) in that directory, or set data.root=<dir>."
    )


class IDXDataModule(TensorDataModule):
    """Official train/test IDX files; a stratified, seeded validation split is carved from train.

    ``sha256`` maps file names to expected checksums; a mismatch is an error, naming both. With ``mirrors``
    (``data=mnist``, ``data=fashion_mnist``) missing files are downloaded, checked against ``sha256``, into
    ``root`` or, when it is null, the cache folder of ``dataset`` (:func:`cvaezoo.data.download.cache_dir`),
    and a file found there without a pin (e.g. an unpacked copy of a pinned .gz) is refused; without
    mirrors the pins are optional.
    Without the train files the test split is still served (scoring a trained model needs nothing else).
    """

    def __init__(self, root: str | None, val_size: int = 5000, sha256: Mapping[str, str] | None = None,
                 mirrors: Sequence[str] = (), dataset: str | None = None, **kwargs):
        kwargs.setdefault("split", (1, 1, 1))  # the files define the split; only val_size is used
        super().__init__(**kwargs)
        if root is None or str(root) in ("", "???"):
            if not dataset:
                raise UserError("data.root must name the directory holding the IDX files (e.g. data.root=/data/mnist)")
            root = cache_dir(dataset)
        self.root, self.val_size, self.sha256 = Path(root).expanduser(), int(val_size), dict(sha256 or {})
        self.mirrors = list(mirrors or [])

    def _read(self, key: str) -> np.ndarray:
        try:
            path = find_idx_file(self.root, FILES[key])
            check_sha256(path, self.sha256, required=bool(self.mirrors))  # with mirrors, every file is pinned
        except MissingFileError:
            if not self.mirrors:
                raise
            path = fetch(f"{FILES[key]}.gz", self.root, self.mirrors, self.sha256)  # checked as it downloads
        return read_idx(path)

    def _read_part(self, part: str) -> tuple[Tensor, Tensor]:
        images, labels = self._read(f"{part}_images"), self._read(f"{part}_labels")
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise IDXFormatError(
                f"{self.root}: {part} images must be (N, H, W) and labels (N,), got {images.shape} and {labels.shape}"
            )
        return torch.from_numpy(images.astype(np.float32) / 255.0)[:, None], torch.from_numpy(labels.astype(np.int64))

    def load_splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        test = self._read_part("test")
        try:
            images, labels = self._read_part("train")
        except MissingFileError as missing:  # test files only: scoring works, training says what is missing
            self.unavailable.update(train=missing, val=missing)
            return {"test": test}
        return {**carve_validation(images, labels, self.val_size, self.split_seed), "test": test}
