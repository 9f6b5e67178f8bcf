"""CIFAR-10 (32x32 RGB, 10 classes) from its binary archive, downloaded on request like MNIST (``data=cifar10``)."""

from __future__ import annotations

import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from cvaezoo.data.base import TensorDataModule, carve_validation
from cvaezoo.data.download import cache_dir, check_sha256, fetch
from cvaezoo.errors import MissingFileError, UserError

ARCHIVE = "cifar-10-binary.tar.gz"
FOLDER = "cifar-10-batches-bin"
RECORD = 1 + 3 * 32 * 32  # a label byte, then the red, green and blue planes


def read_cifar_records(raw: bytes, name: str) -> tuple[Tensor, Tensor]:
    """(images (N, 3, 32, 32) in [0, 1], labels (N,)) from one binary batch file."""
    if len(raw) % RECORD:
        raise UserError(f"{name}: {len(raw)} bytes is not a whole number of {RECORD}-byte CIFAR records")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, RECORD)
    images = torch.from_numpy(records[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)
    return images, torch.from_numpy(records[:, 0].astype(np.int64))


class CIFAR10(TensorDataModule):
    """The five training batches (a stratified, seeded ``val_size`` part becomes val) and the test batch of
    ``cifar-10-binary.tar.gz``, read from ``root`` (null: the cache folder) and downloaded from ``mirrors`` when
    missing, checked against ``sha256``. With mirrors the archive must have a pin; without, the pin is optional."""

    def __init__(self, root: str | None = None, mirrors: Sequence[str] = (), sha256: Mapping[str, str] | None = None,
                 val_size: int = 5000, **kwargs):
        kwargs.setdefault("split", (1, 1, 1))  # the archive defines the split; only val_size is used
        super().__init__(**kwargs)
        self.root = Path(root).expanduser() if root else cache_dir("cifar10")
        self.mirrors, self.sha256, self.val_size = list(mirrors or []), dict(sha256 or {}), int(val_size)

    def load_splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        path = self.root / ARCHIVE
        if self.mirrors:
            path = fetch(ARCHIVE, self.root, self.mirrors, self.sha256)  # a present archive needs its pin, too
        elif not path.is_file():
            raise MissingFileError(f"{path} not found: put CIFAR-10's binary archive there or set data.root")
        else:
            check_sha256(path, self.sha256)  # a local copy (no mirrors): checked when a pin is given
        try:
            with tarfile.open(path, "r:gz") as archive:
                def member(name: str) -> bytes:
                    return archive.extractfile(f"{FOLDER}/{name}").read()

                self.class_names = [c for c in member("batches.meta.txt").decode().split() if c]
                parts = [read_cifar_records(member(f"data_batch_{i}.bin"), f"data_batch_{i}.bin") for i in range(1, 6)]
                test = read_cifar_records(member("test_batch.bin"), "test_batch.bin")
        except (tarfile.TarError, KeyError, EOFError, OSError) as exc:
            raise UserError(f"{path} is not a complete CIFAR-10 binary archive ({exc})") from None
        images, labels = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        return {**carve_validation(images, labels, self.val_size, self.split_seed), "test": test}
