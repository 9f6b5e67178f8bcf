import gzip

import numpy as np
import pytest
import torch
from conftest import write_fake_idx_dir

from cvaezoo.data import Digits, IDXDataModule, MNIST5k, read_idx, stratified_split, write_idx
from cvaezoo.data.idx import IDXFormatError
from cvaezoo.errors import UserError


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("shape", [(5, 28, 28), (7,), (2, 3, 4, 5)])
def test_idx_round_trip(tmp_path, suffix, shape):
    array = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    path = tmp_path / f"a-idx{suffix}"
    write_idx(path, array)
    assert np.array_equal(read_idx(path), array)


def test_idx_reads_the_standard_header_by_hand(tmp_path):
    # magic 0x00000801 (ubyte, 1 dim), 3 items -- written without write_idx
    path = tmp_path / "labels-idx1-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1]))
    assert read_idx(path).tolist() == [7, 2, 1]


def test_idx_truncated_and_bad_magic_are_reported(tmp_path):
    path = tmp_path / "x-idx3-ubyte"
    write_idx(path, np.zeros((4, 3, 3), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(IDXFormatError, match=r"header says shape \(4, 3, 3\)"):
        read_idx(path)
    path.write_bytes(b"PK\x03\x04rest")
    with pytest.raises(IDXFormatError, match="not an IDX file"):
        read_idx(path)


def test_idx_data_module_splits_and_scales(idx_dir):
    dm = IDXDataModule(root=str(idx_dir), val_size=20, binarize="none")
    dm.setup()
    sizes = {k: len(v) for k, v in dm.splits.items()}
    assert sizes == {"train": 40, "val": 20, "test": 20}
    x, y = dm.splits["train"].tensors
    assert x.shape[1:] == (1, 28, 28) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert torch.bincount(dm.splits["val"].tensors[1]).tolist() == [2] * 10  # stratified
    assert dm.spec.x_shape == (1, 28, 28)


def test_idx_missing_files_say_where_to_put_them(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"t10k-images-idx3-ubyte\[\.gz\] in {tmp_path}"):
        IDXDataModule(root=str(tmp_path)).setup()
    with pytest.raises(ValueError, match="data.root"):
        IDXDataModule(root="???")


def test_idx_test_files_alone_serve_the_test_split_and_training_names_what_is_missing(tmp_path):
    root = write_fake_idx_dir(tmp_path / "d", n_test=20)
    for part in ("images-idx3", "labels-idx1"):
        (root / f"train-{part}-ubyte.gz").unlink()
    datamodule = IDXDataModule(root=str(root))
    x, y = datamodule.split_tensors("test")
    assert x.shape == (20, 1, 28, 28) and datamodule.spec.x_shape == (1, 28, 28)
    for use in (lambda: datamodule.split_tensors("train"), datamodule.train_dataloader, datamodule.val_dataloader,
                datamodule.class_prior):
        with pytest.raises(FileNotFoundError, match=rf"missing IDX file train-images-idx3-ubyte\[\.gz\] in {root}"):
            use()


def test_idx_checksum_mismatch_is_an_error(tmp_path):
    root = write_fake_idx_dir(tmp_path / "d", gz=False)
    dm = IDXDataModule(root=str(root), val_size=10, sha256={"train-images-idx3-ubyte": "0" * 64})
    with pytest.raises(UserError, match="train-images-idx3-ubyte: sha256 [0-9a-f]{64} does not match the expected 000"):
        dm.setup()


def test_stratified_split_is_disjoint_seeded_and_balanced():
    labels = np.repeat(np.arange(10), 50)
    a = stratified_split(labels, [300, 100, 100], seed=1)
    b = stratified_split(labels, [300, 100, 100], seed=1)
    c = stratified_split(labels, [300, 100, 100], seed=2)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    assert [len(p) for p in a] == [300, 100, 100]
    assert len(set(np.concatenate(a))) == 500
    assert np.bincount(labels[a[1]]).tolist() == [10] * 10
    with pytest.raises(ValueError, match="asks for 600"):
        stratified_split(labels, [400, 100, 100], seed=0)
    with pytest.raises(ValueError, match="three positive sizes"):
        stratified_split(labels, [400, 100], seed=0)


def test_embedded_mnist_is_real_and_split_as_configured():
    dm = MNIST5k(split=(4000, 500, 500), binarize="none")
    dm.setup()
    x, y = dm.splits["train"].tensors
    assert x.shape == (4000, 1, 28, 28) and len(dm.splits["test"]) == 500
    assert torch.bincount(y).tolist() == [400] * 10
    assert 0.1 < float(x.mean()) < 0.2  # real digits: mostly black background
    assert dm.class_prior() == pytest.approx([0.1] * 10)


@pytest.mark.parametrize("mode", ["threshold", "dynamic"])
def test_binarize_modes(mode):
    dm = Digits(binarize=mode)
    dm.setup()
    for split in ("val", "test"):
        assert set(dm.splits[split].tensors[0].unique().tolist()) <= {0.0, 1.0}
    train = dm.splits["train"].tensors[0]
    if mode == "dynamic":  # training images stay grey; a fresh Bernoulli draw is made per batch
        assert len(train.unique()) > 2
        dm.trainer = type("T", (), {"training": True})()
        x1, _ = dm.on_after_batch_transfer((train[:50], torch.zeros(50)), 0)
        x2, _ = dm.on_after_batch_transfer((train[:50], torch.zeros(50)), 0)
        assert set(x1.unique().tolist()) <= {0.0, 1.0} and not torch.equal(x1, x2)


def test_bad_data_config_values():
    with pytest.raises(ValueError, match="data.binarize"):
        Digits(binarize="otsu")
    with pytest.raises(ValueError, match="batch_size"):
        Digits(batch_size=0)


def test_train_split_is_scored_with_one_fixed_binarisation():
    """Dynamic binarisation keeps the training split grey for per-batch draws; scoring it (cvaezoo-evaluate
    --split train) must see binary images, the same draw each time, as val and test do."""
    dm = MNIST5k(split=(300, 100, 100), binarize="dynamic")
    x, _ = dm.split_tensors("train")
    assert set(x.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(x, MNIST5k(split=(300, 100, 100), binarize="dynamic").split_tensors("train")[0])
    assert len(dm.splits["train"].tensors[0].unique()) > 2  # what training draws from stays grey
    with pytest.raises(ValueError, match="this data has no 'unseen' split"):
        dm.split_tensors("unseen")


def test_shapes_with_dynamic_binarisation_sets_up():
    from cvaezoo.data import Shapes

    data = Shapes(split=(50, 20, 20), binarize="dynamic")
    x, _ = data.split_tensors("unseen")
    assert set(x.unique().tolist()) <= {0.0, 1.0}
