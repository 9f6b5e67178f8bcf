"""Batches served from a copy of the data in the training device's memory, with a DataLoader's order and seeds.

A split that is a few tensors in memory (every built-in dataset) needs no DataLoader: a permutation of indices on
the device and one gather per tensor per batch. :class:`DeviceBatches` yields what
``DataLoader(dataset, batch_size, shuffle, collate_fn=keep_batch)`` would, example for example, for the same
random state, including the samplers Lightning puts in under DDP; on a GPU it saves the host-to-device copy of
every batch and the DataLoader's per-batch Python machinery.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator

import torch
from torch import Tensor


def draw_seed() -> int:
    """One int64 from torch's default generator, as a DataLoader draws its seeds."""
    return int(torch.empty((), dtype=torch.int64).random_().item())


class DeviceBatches:
    """Batches of ``tensors`` (already on their device), in a torch DataLoader's order.

    Single process: a RandomSampler's permutation (``shuffle``) or the examples in order. Under DDP (``world_size``
    > 1) the training order of Lightning's DistributedSampler (shuffled with ``seed`` + epoch, padded with the
    first examples to a multiple of the processes, every ``world_size``-th from ``rank``) and, for evaluation,
    its UnrepeatedDistributedSampler (each example on exactly one process). The draws a DataLoader takes from
    torch's default generator are taken alike (one for the iterator, one for a single process's shuffle), so the
    random numbers drawn after them (binarisation, posterior noise) are the same as with a DataLoader. (Not inside
    a CombinedLoader: there a DataLoader takes its iterator's draw when the iterator is made, before the other
    loader's, which an iterator that Lightning also makes only to check it cannot copy.)
    """

    def __init__(self, tensors: tuple[Tensor, ...], batch_size: int, shuffle: bool, rank: int = 0,
                 world_size: int = 1, epoch: Callable[[], int] = lambda: 0, seed: int | None = None) -> None:
        self.tensors, self.batch_size, self.shuffle = tensors, batch_size, shuffle
        self.rank, self.world_size, self.epoch = rank, world_size, epoch
        self.seed = int(os.getenv("PL_GLOBAL_SEED", 0)) if seed is None else seed  # Lightning's sampler seed
        n = len(tensors[0])
        if world_size == 1:
            self.examples = n
        elif shuffle:
            self.examples = math.ceil(n / world_size)
        else:
            self.examples = len(range(rank, n, world_size))

    def __len__(self) -> int:
        return math.ceil(self.examples / self.batch_size)

    def order(self) -> Tensor:
        """This process's indices for one pass, on the data's device."""
        n, device = len(self.tensors[0]), self.tensors[0].device
        if self.world_size == 1:
            if not self.shuffle:
                return torch.arange(n, device=device)
            return torch.randperm(n, generator=torch.Generator().manual_seed(draw_seed())).to(device)
        if not self.shuffle:
            return torch.arange(self.rank, n, self.world_size, device=device)
        indices = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + self.epoch()))
        total = self.examples * self.world_size
        indices = indices.repeat(math.ceil(total / n))[:total]  # padded with the first ones, as DistributedSampler
        return indices[self.rank : total : self.world_size].to(device)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        # both draws at the first batch: Lightning makes an iterator of anything but a DataLoader once only to
        # check that it can, and takes the first batch right after making the iterator it uses
        draw_seed()  # the seed a DataLoader's iterator draws when it is made (unused here)
        order = self.order()
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            yield tuple(t[index] for t in self.tensors)
