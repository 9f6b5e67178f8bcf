"""A LightningDataModule over in-memory tensors: stratified seeded split, binarisation, loaders."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from lightning.pytorch.utilities import CombinedLoader
from sklearn.model_selection import train_test_split
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from cvaezoo.data.device_batches import DeviceBatches
from cvaezoo.errors import UserError

BINARIZE_MODES = ("none", "threshold", "dynamic")
# seed offsets of the one fixed Bernoulli draw per split (data.split_seed + offset)
FIXED_DRAW_SEEDS = {"val": 1, "test": 2, "train": 3, "unseen": 4}


class InMemoryDataset(TensorDataset):
    """A TensorDataset whose batches are gathered with one indexing op per tensor.

    DataLoader hands a whole batch of indices to ``__getitems__``; with :func:`keep_batch` as the
    collate function there is no per-example indexing and stacking (the cost that dominates
    small-model training from memory). Samplers, including DDP's DistributedSampler, work as usual.
    """

    def __getitems__(self, indices: list[int]) -> tuple[Tensor, ...]:
        index = torch.as_tensor(indices)
        return tuple(t[index] for t in self.tensors)


def keep_batch(batch: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return batch


@dataclass(frozen=True)
class DataSpec:
    """What a model needs to know about the data to build its networks."""

    x_shape: tuple[int, ...]
    y_kind: str  # "class", "multihot" (attributes) or "vector" (e.g. the pixels of a structured output)
    y_dim: int  # number of classes, or the length of y
    #: distinct pixel values the models see (x, and y when it is pixels): 2 binary, 256 8-bit, 17 sklearn digits
    pixel_levels: int = 2
    #: for multi-hot attributes, the sizes of their consecutive groups (:mod:`cvaezoo.attributes`)
    attribute_groups: tuple[int, ...] | None = None
    #: names of the classes (or of the attributes), when the data has them
    class_names: tuple[str, ...] | None = None


def binarize_fixed(images: Tensor, mode: str, seed: int) -> Tensor:
    """Images as a model trained with ``data.binarize=mode`` is scored on them: "threshold" maps x > 0.5 to 1,
    "dynamic" takes one Bernoulli draw seeded with ``seed``, "none" keeps them."""
    if mode == "threshold":
        return (images > 0.5).float()
    if mode == "dynamic":
        return torch.bernoulli(images, generator=torch.Generator().manual_seed(seed))
    return images


def check_split_sizes(sizes: Sequence[int]) -> list[int]:
    """``data.split`` as three positive ints [train, val, test], or a ValueError naming it."""
    sizes = [int(s) for s in sizes]
    if len(sizes) != 3 or any(s <= 0 for s in sizes):
        raise UserError(f"data.split must be three positive sizes [train, val, test], got {sizes}")
    return sizes


def split_sizes(split: Sequence[float], n: int) -> list[int]:
    """``data.split`` as sizes: three counts [train, val, test], or three fractions of the n examples
    (e.g. [0.8, 0.1, 0.1]; val and test get at least one example each)."""
    values = [float(v) for v in split]
    if len(values) == 3 and all(0 < v < 1 for v in values):
        if sum(values) > 1 + 1e-9:
            raise UserError(f"data.split fractions must add up to at most 1, got {list(split)}")
        val, test = (max(1, round(v * n)) for v in values[1:])
        return [min(round(values[0] * n), n - val - test), val, test]
    return check_split_sizes(split)


def carve_validation(images: Tensor, labels: Tensor, val_size: int, seed: int) -> dict[str, tuple[Tensor, Tensor]]:
    """train and val parts of a dataset's official training set: ``val_size`` examples, stratified and seeded,
    become val (IDX files, CIFAR-10)."""
    train, val = train_test_split(np.arange(len(labels)), test_size=val_size, stratify=labels.numpy(), random_state=seed)
    return {"train": (images[train], labels[train]), "val": (images[val], labels[val])}


def stratified_split(labels: np.ndarray, sizes: Sequence[float], seed: int) -> list[np.ndarray]:
    """Indices of disjoint train/val/test subsets of the given sizes (or fractions), each with the label
    proportions (class labels, shape (N,)); multi-hot attribute rows (N, A) are split at random."""
    sizes = check_split_sizes(split_sizes(sizes, len(labels)))
    if sum(sizes) > len(labels):
        raise UserError(f"data.split {sizes} asks for {sum(sizes)} examples but the dataset has {len(labels)}")
    index = np.arange(len(labels))
    classes = labels.ndim == 1
    try:
        rest, test = train_test_split(index, test_size=sizes[2], stratify=labels if classes else None, random_state=seed)
        train, val = train_test_split(rest, train_size=sizes[0], test_size=sizes[1],
                                      stratify=labels[rest] if classes else None, random_state=seed)
    except ValueError as exc:
        raise UserError(f"data.split {sizes} cannot be stratified over these labels: {exc}") from exc
    return [np.sort(train), np.sort(val), np.sort(test)]


class TensorDataModule(L.LightningDataModule):
    """Images in [0, 1] of shape (N, C, H, W) with integer labels, split and served from memory.

    Subclasses implement :meth:`load` (all examples) or :meth:`load_splits` (predefined splits).
    ``binarize``: "none" keeps grey levels; "threshold" maps x > 0.5 to 1; "dynamic" draws
    x ~ Bernoulli(grey level) afresh for every training batch and once, with a fixed seed, for
    the validation and test sets (the protocol behind the literature's binarized-MNIST numbers).
    ``device_batches``: batches gathered on the training device from a copy of the split kept there
    (:class:`~cvaezoo.data.device_batches.DeviceBatches`: the same examples in the same order as the DataLoaders,
    for the same seed), or DataLoaders that copy each batch from the host. Semi-supervised training
    (``labels_per_class``), ``Trainer(overfit_batches=...)`` and DDP with ``use_distributed_sampler=False`` use
    DataLoaders, whose order Lightning changes there. The copy of every split stays in the device's memory
    for the fit: set ``device_batches=false`` for data larger than a fraction of it.
    """

    num_classes: int = 10
    #: what y is: "class" labels, or a "vector" made by :meth:`make_pairs` (e.g. missing pixels)
    y_kind: str = "class"
    #: distinct grey levels of the stored images (before binarisation): 256 for 8-bit images
    pixel_levels: int = 256
    #: names of the classes, when the data has them (an image folder's subfolders, CIFAR-10's classes)
    class_names: list[str] | None = None

    def __init__(
        self,
        split: Sequence[float] = (4000, 500, 500),  # counts, or fractions of the examples
        split_seed: int = 0,
        batch_size: int = 128,
        eval_batch_size: int = 500,
        binarize: str = "none",
        num_workers: int = 0,
        labels_per_class: int | None = None,
        labelled_batch_size: int = 32,
        device_batches: bool | None = None,
    ):
        super().__init__()
        if binarize not in BINARIZE_MODES:
            raise UserError(f"data.binarize must be one of {list(BINARIZE_MODES)}, got {binarize!r}")
        if batch_size <= 0 or eval_batch_size <= 0:
            raise UserError(f"data.batch_size and data.eval_batch_size must be > 0, got {batch_size}, {eval_batch_size}")
        self.split, self.split_seed = list(split), split_seed
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.binarize, self.num_workers = binarize, num_workers
        if labels_per_class is not None and labels_per_class <= 0:
            raise UserError(f"data.labels_per_class must be a positive number or null, got {labels_per_class}")
        if labelled_batch_size <= 0:
            raise UserError(f"data.labelled_batch_size must be > 0, got {labelled_batch_size}")
        self.labels_per_class, self.labelled_batch_size = labels_per_class, labelled_batch_size
        #: serve batches from a copy on the training device (True), through DataLoaders (False), or (None) from the
        #: device unless data.num_workers > 0 asks for loader processes
        self.device_batches = num_workers == 0 if device_batches is None else device_batches
        if self.device_batches and num_workers > 0:
            raise UserError(f"data.device_batches=true serves batches without loader processes; data.num_workers "
                            f"must be 0, got {num_workers}")
        self.splits: dict[str, InMemoryDataset] = {}
        #: splits a reader could not serve, with the reason (e.g. only the test files are present)
        self.unavailable: dict[str, UserError] = {}

    # ----- what a dataset defines ------------------------------------------------------------
    def load(self) -> tuple[Tensor, Tensor]:
        """All images (N, C, H, W) float in [0, 1] and labels: (N,) int64 classes or (N, A) 0/1 attributes."""
        raise NotImplementedError

    def load_splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        """train/val/test tensors; by default a stratified split of :meth:`load`."""
        images, labels = self.load()
        _check_images(images, labels, "the data", self.num_classes)
        parts = stratified_split(labels.numpy(), self.split, self.split_seed)
        return {name: (images[idx], labels[idx]) for name, idx in zip(("train", "val", "test"), parts)}

    # ----- Lightning -------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        for name, (images, labels) in self.load_splits().items():
            _check_images(images, labels, name, self.num_classes)
            if self.binarize == "threshold" or (self.binarize == "dynamic" and name != "train"):
                images = self._binarize_fixed(images, name)
            x, y = self.make_pairs(images, labels)
            self.splits[name] = InMemoryDataset(x.contiguous(), y.contiguous())

    def make_pairs(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """The (x, y) a split serves: the images and their class labels (or float attribute vectors)."""
        return images, labels.long() if labels.dim() == 1 else labels.float()

    def _binarize_fixed(self, images: Tensor, name: str) -> Tensor:
        return binarize_fixed(images, self.binarize, self.split_seed + FIXED_DRAW_SEEDS[name])

    def split_tensors(self, name: str) -> tuple[Tensor, Tensor]:
        """(x, y) of a split as models are scored on it. Under dynamic binarisation the training split is
        stored grey (it is redrawn every batch); here it gets one fixed draw, as val and test have."""
        x, y = self.split_dataset(name).tensors
        if name == "train" and self.binarize == "dynamic":
            x = self._binarize_fixed(x, name)
        return x, y

    def split_dataset(self, name: str) -> InMemoryDataset:
        """One split as stored, or the reason it is missing (a file the reader did not find, or no such split)."""
        self.setup()
        if name in self.splits:
            return self.splits[name]
        if name in self.unavailable:
            raise self.unavailable[name]
        raise UserError(f"this data has no {name!r} split; it has {sorted(self.splits)}")

    def semi_supervised_split(self) -> tuple[InMemoryDataset, InMemoryDataset]:
        """(labelled, unlabelled) parts of the training split: labels_per_class examples of each class
        chosen with split_seed, and the rest with every label replaced by -1 (no label can leak)."""
        images, labels = self.split_dataset("train").tensors
        generator = torch.Generator().manual_seed(self.split_seed)
        chosen = []
        for label in range(self.num_classes):
            members = torch.nonzero(labels == label).flatten()
            if len(members) < self.labels_per_class:
                raise UserError(f"data.labels_per_class={self.labels_per_class} but class {label} has {len(members)} training examples")
            chosen.append(members[torch.randperm(len(members), generator=generator)[: self.labels_per_class]])
        labelled = torch.sort(torch.cat(chosen)).values
        mask = torch.ones(len(labels), dtype=torch.bool)
        mask[labelled] = False
        unlabelled_images = images[mask]
        return (InMemoryDataset(images[labelled], labels[labelled]),
                InMemoryDataset(unlabelled_images, torch.full((len(unlabelled_images),), -1, dtype=torch.long)))

    @property
    def spec(self) -> DataSpec:
        self.setup()
        x, y = next(iter(self.splits.values())).tensors  # every split has the same shapes
        levels = 2 if self.binarize != "none" else self.pixel_levels
        groups = self.attribute_groups if self.y_kind == "multihot" else None
        names = self.class_names if self.y_kind == "class" else getattr(self, "attribute_names", None)
        return DataSpec(tuple(x.shape[1:]), self.y_kind, self.num_classes if self.y_kind == "class" else int(y.shape[1]),
                        levels, tuple(groups) if groups else None, tuple(names) if names else None)

    def class_prior(self) -> list[float] | None:
        """p(y) estimated from the training labels that a model may see (None when y is not a class label):
        with ``labels_per_class``, the labelled part only (the hidden labels of the rest must not leak)."""
        self.setup()
        if self.y_kind != "class":
            return None
        labels = self.split_dataset("train").tensors[1] if self.labels_per_class is None else self.semi_supervised_split()[0].tensors[1]
        counts = torch.bincount(labels, minlength=self.num_classes).float()
        return (counts / counts.sum()).tolist()

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if self.binarize == "dynamic" and self.trainer is not None and self.trainer.training:
            if isinstance(batch, dict):
                return {name: (torch.bernoulli(x), y) for name, (x, y) in batch.items()}
            x, y = batch
            return torch.bernoulli(x), y
        return batch

    def _batches(self, dataset: InMemoryDataset, shuffle: bool, batch_size: int,
                 device_batches: bool | None = None) -> DataLoader | DeviceBatches:
        """Batches of ``dataset``: from its copy on the trainer's device, or a DataLoader (``device_batches``, by
        default the data module's)."""
        trainer = self.trainer
        world_size, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        if (self.device_batches if device_batches is None else device_batches) and _samples_as_given(trainer):
            device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
            epoch = (lambda: trainer.current_epoch) if trainer is not None else (lambda: 0)
            tensors = tuple(t.to(device) for t in dataset.tensors)  # once per fit: Lightning asks once per stage
            return DeviceBatches(tensors, batch_size, shuffle, rank, world_size, epoch)
        sampler = None
        if not shuffle and world_size > 1:
            # evaluation under DDP: each example on exactly one process (Lightning's default sampler pads the
            # last batch with repeated examples, which would bias the reduced means)
            sampler = UnrepeatedDistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=False)
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, sampler=sampler,
                          num_workers=self.num_workers, collate_fn=keep_batch, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader | DeviceBatches | CombinedLoader:
        """Batches of (x, y); with labels_per_class, dicts {"labelled": (x, y), "unlabelled": (x, -1)}
        in which the small labelled set is cycled alongside each pass over the unlabelled rest."""
        if self.labels_per_class is None:
            return self._batches(self.split_dataset("train"), True, self.batch_size)
        labelled, unlabelled = self.semi_supervised_split()  # DataLoaders: DeviceBatches' random stream would differ
        loaders = {"labelled": self._batches(labelled, True, min(self.labelled_batch_size, len(labelled)), False),
                   "unlabelled": self._batches(unlabelled, True, self.batch_size, False)}
        return CombinedLoader(loaders, mode="max_size_cycle")

    def val_dataloader(self) -> DataLoader | DeviceBatches:
        return self._batches(self.split_dataset("val"), False, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader | DeviceBatches:
        return self._batches(self.split_dataset("test"), False, self.eval_batch_size)


def _samples_as_given(trainer: L.Trainer | None) -> bool:
    """Whether Lightning serves the loaders' own order (what DeviceBatches copies): not when it turns shuffling off
    (``overfit_batches``) or leaves a DDP process unsharded (``use_distributed_sampler=False``)."""
    if trainer is None:
        return True
    unsharded = trainer.world_size > 1 and not getattr(trainer._accelerator_connector, "use_distributed_sampler", True)
    return not trainer.overfit_batches and not unsharded


def _check_images(images: Tensor, labels: Tensor, name: str, num_classes: int) -> None:
    if images.dim() != 4:
        raise UserError(f"{name} images must have shape (N, C, H, W), got {tuple(images.shape)}")
    if len(images) != len(labels):
        raise UserError(f"{name}: {len(images)} images but {len(labels)} labels")
    if not torch.isfinite(images).all():
        raise UserError(f"{name} images contain non-finite values")
    lo, hi = (float(images.min()), float(images.max())) if images.numel() else (0.0, 1.0)
    if lo < 0.0 or hi > 1.0:
        raise UserError(f"{name} images must lie in [0, 1], found values in [{lo}, {hi}]")
    if labels.dim() == 2:  # multi-hot attributes
        if not bool(((labels == 0) | (labels == 1)).all()):
            raise UserError(f"{name} attribute vectors must hold only 0 and 1, found {labels.unique()[:5].tolist()}")
        return
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if len(bad):
        raise UserError(f"{name} labels must lie in [0, {num_classes}), found {bad[:5].tolist()}")
