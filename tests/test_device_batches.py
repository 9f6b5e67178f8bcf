"""Batches from a copy on the device (data.device_batches) are the DataLoaders' batches: the same examples in the
same order for the same seed, the same random numbers drawn after them, and the same shards under DDP."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, DistributedSampler

from cvaezoo.data import MNIST5k
from cvaezoo.data.base import InMemoryDataset, keep_batch
from cvaezoo.data.device_batches import DeviceBatches
from cvaezoo.models import MODELS


def dataset(n: int) -> InMemoryDataset:
    return InMemoryDataset(torch.arange(n * 3, dtype=torch.float32).reshape(n, 3), torch.arange(n) % 4)


def epochs(loader, count: int = 2) -> tuple[list, torch.Tensor]:
    """Every batch of ``count`` passes, then a draw from torch's default generator (what comes after them)."""
    batches = [batch for _ in range(count) for batch in loader]
    return batches, torch.rand(3)


def same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(len(p) == len(q) and all(torch.equal(s, t) for s, t in zip(p, q)) for p, q in zip(a, b))


@pytest.mark.parametrize("n", [10, 37])
@pytest.mark.parametrize("shuffle", [True, False])
def test_one_process_gets_the_dataloaders_batches_and_random_stream(n, shuffle):
    data = dataset(n)
    torch.manual_seed(5)
    expected, after = epochs(DataLoader(data, batch_size=4, shuffle=shuffle, collate_fn=keep_batch))
    torch.manual_seed(5)
    batches = DeviceBatches(data.tensors, 4, shuffle)
    got, got_after = epochs(batches)
    assert same(got, expected) and torch.equal(got_after, after) and len(batches) == len(expected) // 2
    if shuffle:
        assert not torch.equal(got[0][1], torch.arange(4) % 4)  # shuffled indeed


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("shuffle", [True, False])
def test_each_process_gets_lightnings_distributed_shard(world_size, shuffle):
    """Training: DistributedSampler (seed + epoch, padded); evaluation: UnrepeatedDistributedSampler."""
    data = dataset(11)  # not a multiple of the processes: padding (training) or uneven shards (evaluation)
    seen = []
    for rank in range(world_size):
        for epoch in (0, 1):
            if shuffle:
                sampler = DistributedSampler(data, num_replicas=world_size, rank=rank, shuffle=True, seed=7)
                sampler.set_epoch(epoch)
            else:
                sampler = UnrepeatedDistributedSampler(data, num_replicas=world_size, rank=rank, shuffle=False)
            torch.manual_seed(1)
            expected, after = epochs(DataLoader(data, batch_size=2, sampler=sampler, collate_fn=keep_batch), 1)
            torch.manual_seed(1)
            batches = DeviceBatches(data.tensors, 2, shuffle, rank, world_size, lambda: epoch, seed=7)
            got, got_after = epochs(batches, 1)
            assert same(got, expected) and torch.equal(got_after, after) and len(batches) == len(expected)
            seen += [int(label) for _, labels in got for label in labels] if epoch == 0 else []
    assert len(seen) == (11 if not shuffle else 12)  # every example once (training pads one)


def fit_weights(device_batches: bool, **trainer_options) -> dict[str, torch.Tensor]:
    datamodule = MNIST5k(batch_size=64, binarize="dynamic", device_batches=device_batches)
    datamodule.setup()
    L.seed_everything(3, verbose=False)
    model = MODELS["cvae1"](x_shape=(1, 28, 28), y_dim=10, net={"kind": "mlp", "hidden": [32]}, latent_dim=4)
    options = {"max_steps": 6, "limit_val_batches": 2, "val_check_interval": 3, **trainer_options}
    L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, **options).fit(model, datamodule=datamodule)
    return model.state_dict()


@pytest.mark.parametrize("options", [{}, {"overfit_batches": 2, "max_epochs": 2, "max_steps": -1, "val_check_interval": 1.0}],
                         ids=["with validation", "overfit_batches (Lightning's own order: DataLoaders)"])
def test_training_from_the_device_copy_gives_the_same_weights(options):
    """Six steps with validation: bit for bit the weights of the DataLoaders' run (batches, binarisation, noise)."""
    with_loaders, from_device = fit_weights(False, **options), fit_weights(True, **options)
    assert all(torch.equal(with_loaders[k], from_device[k]) for k in with_loaders)


def test_semi_supervised_training_keeps_dataloaders():
    """A CombinedLoader's DataLoaders draw their seeds in an order a device stream cannot copy."""
    datamodule = MNIST5k(labels_per_class=10, device_batches=True)
    assert all(isinstance(loader, DataLoader) for loader in datamodule.train_dataloader().iterables.values())
    assert isinstance(datamodule.val_dataloader(), DeviceBatches)


def test_the_shuffle_seed_under_ddp_is_lightnings(monkeypatch):
    """Lightning seeds its DistributedSampler with PL_GLOBAL_SEED (set by seed_everything); so do device batches."""
    monkeypatch.setenv("PL_GLOBAL_SEED", "11")
    data = dataset(9)
    sampler = DistributedSampler(data, num_replicas=2, rank=1, shuffle=True, seed=11)
    assert DeviceBatches(data.tensors, 9, True, rank=1, world_size=2).order().tolist() == list(sampler)


def test_device_batches_refuse_loader_processes():
    from cvaezoo.errors import UserError

    with pytest.raises(UserError, match="data.device_batches=true serves batches without loader processes"):
        MNIST5k(device_batches=True, num_workers=2)
    assert not MNIST5k(num_workers=2).device_batches and MNIST5k().device_batches  # the default follows num_workers
