"""Your own data: image folders and tables, CIFAR-10's archive, colour images, predictions on new image files."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from conftest import QUIET, write_cifar_archive, write_digit_folder
from PIL import Image

from cvaezoo.cli import classify_main, generate_main
from cvaezoo.data import CIFAR10, ImageFolder
from cvaezoo.data.images import load_inputs
from cvaezoo.errors import MissingFileError, UserError
from cvaezoo.runs import compose_config, instantiate_checked
from cvaezoo.train import train


def test_class_subfolders_give_sorted_class_names_and_stratified_splits(tmp_path):
    names = write_digit_folder(tmp_path / "digits", digits=(0, 1, 7), per_class=20)
    data = ImageFolder(root=str(tmp_path / "digits"))
    x, y = data.split_tensors("train")
    assert data.class_names == names == ["one", "seven", "zero"] and data.num_classes == 3
    assert x.shape[1:] == (1, 28, 28) and data.spec.pixel_levels == 256 and data.spec.class_names == tuple(names)
    assert [len(data.split_tensors(s)[0]) for s in ("train", "val", "test")] == [48, 6, 6]  # 80/10/10 % of 60
    assert torch.bincount(y).tolist() == [16, 16, 16]
    grey = Image.open(min((tmp_path / "digits" / "one").iterdir()))
    assert torch.equal(x[0, 0], torch.from_numpy(np.asarray(grey, dtype=np.float32) / 255))  # pixels as stored


def test_colour_and_size_are_decided_from_the_images_or_the_config(tmp_path):
    write_digit_folder(tmp_path / "d", digits=(0, 1), per_class=10)
    Image.new("RGB", (40, 30), (200, 30, 30)).save(tmp_path / "d" / "one" / "red.png")
    with pytest.raises(UserError, match=r"different sizes \(.*28x28.*, red.png 30x40\); set data.image_size"):
        ImageFolder(root=str(tmp_path / "d")).setup()
    data = ImageFolder(root=str(tmp_path / "d"), image_size=16, split=[15, 3, 3])
    x, _ = data.split_tensors("train")
    assert x.shape[1:] == (3, 16, 16)  # one colour image makes the set RGB
    assert ImageFolder(root=str(tmp_path / "d"), image_size=16, channels=1).spec.x_shape == (1, 16, 16)


@pytest.mark.parametrize("suffix, delimiter", [(".csv", ","), (".tsv", "\t")])
def test_a_table_of_labels_or_attributes(tmp_path, suffix, delimiter):
    write_digit_folder(tmp_path / "d", digits=(0, 1), per_class=10)
    files = sorted(p.relative_to(tmp_path / "d").as_posix() for p in (tmp_path / "d").rglob("*.png"))
    rows = [[f, f.split("/")[0], "1" if f.startswith("one") else "0", "true" if i % 2 else "false"]
            for i, f in enumerate(files)]
    with open(tmp_path / "d" / f"table{suffix}", "w", newline="") as f:
        csv.writer(f, delimiter=delimiter).writerows([["file", "digit", "is_one", "odd"], *rows])
    labels = ImageFolder(root=str(tmp_path / "d"), table=f"table{suffix}", label_column="digit", split=[14, 3, 3])
    assert labels.spec.y_kind == "class" and labels.class_names == ["one", "zero"]
    attributes = ImageFolder(root=str(tmp_path / "d"), table=f"table{suffix}", attribute_columns=["is_one", "odd"],
                             split=[14, 3, 3])
    spec = attributes.spec
    assert spec.y_kind == "multihot" and spec.y_dim == 2 and spec.attribute_groups == (1, 1)
    _, y = attributes.split_tensors("test")
    assert set(y.flatten().tolist()) <= {0.0, 1.0} and attributes.attribute_vector("odd").tolist() == [0.0, 1.0]


@pytest.mark.parametrize("make, message", [
    (lambda root: root.mkdir(), "has no class subfolders: expected"),
    (lambda root: (root / "a").mkdir(parents=True), r"class folder .*a holds no images"),
    (lambda root: write_digit_folder(root, digits=(3,), per_class=3), r"found one class \(\['three'\]\)"),
    (lambda root: (write_digit_folder(root, digits=(3, 4), per_class=3), (root / "four" / "bad.png").write_bytes(b"no")),
     r"bad.png is not a readable image"),
])
def test_folder_errors_name_the_problem(tmp_path, make, message):
    make(tmp_path / "d")
    with pytest.raises(UserError, match=message):
        ImageFolder(root=str(tmp_path / "d"), split=[2, 1, 1]).setup()


def test_table_errors_name_the_file_line_and_columns(tmp_path):
    write_digit_folder(tmp_path / "d", digits=(0, 1), per_class=3)
    (tmp_path / "d" / "t.csv").write_text("name,label\nzero/x.png,zero\n")
    with pytest.raises(UserError, match=r"t.csv: needs .*\['file', 'label'\]; missing \['file'\]"):
        ImageFolder(root=str(tmp_path / "d"), table="t.csv").setup()
    (tmp_path / "d" / "t.csv").write_text("file,smile\nzero/x.png,maybe\n")
    with pytest.raises(UserError, match=r"t.csv, line 2: attribute values must be .*\['maybe'\]"):
        ImageFolder(root=str(tmp_path / "d"), table="t.csv", attribute_columns=["smile"]).setup()
    with pytest.raises(MissingFileError, match="table .*missing.csv not found"):
        ImageFolder(root=str(tmp_path / "d"), table="missing.csv").setup()


def test_cifar10_reads_the_binary_archive(tmp_path):
    write_cifar_archive(tmp_path / "cifar" / "cifar-10-binary.tar.gz", per_batch=20, n_test=20)
    cfg = compose_config(["data=cifar10", f"data.root={tmp_path / 'cifar'}", "data.val_size=10", "data.sha256=null"])
    data = instantiate_checked(cfg.data)
    spec = data.spec
    assert spec.x_shape == (3, 32, 32) and spec.pixel_levels == 256 and spec.class_names[:2] == ("airplane", "automobile")
    assert [len(data.split_tensors(s)[0]) for s in ("train", "val", "test")] == [90, 10, 20]
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "cifar-10-binary.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(UserError, match="is not a complete CIFAR-10 binary archive"):
        CIFAR10(root=str(tmp_path / "bad")).setup()
    with pytest.raises(MissingFileError, match="put CIFAR-10's binary archive there"):
        CIFAR10(root=str(tmp_path / "none")).setup()


def test_new_inputs_take_the_models_size_and_channels(tmp_path):
    Image.new("RGB", (40, 40), (255, 0, 0)).save(tmp_path / "red.png")
    np.save(tmp_path / "batch.npy", np.full((2, 8, 8, 3), 255, dtype=np.uint8))
    names, x = load_inputs([tmp_path / "red.png", tmp_path / "batch.npy"], (1, 28, 28))
    assert names == [str(tmp_path / "red.png"), f"{tmp_path / 'batch.npy'}[0]", f"{tmp_path / 'batch.npy'}[1]"]
    assert x.shape == (3, 1, 28, 28)
    assert x[0].mean().item() == pytest.approx(76 / 255, abs=1e-6)  # Pillow's grey of pure red: 0.299 * 255
    assert torch.allclose(x[1:], torch.ones(2, 1, 28, 28))
    np.save(tmp_path / "bad.npy", np.full((2, 5, 5), 2.0))
    with pytest.raises(UserError, match=r"float pixels must lie in \[0, 1\]"):
        load_inputs([tmp_path / "bad.npy"], (1, 28, 28))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="notes.txt: not an image"):
        load_inputs([tmp_path / "notes.txt"], (1, 28, 28))


def test_a_folder_of_pngs_trains_classifies_and_generates(tmp_path, capsys):
    names = write_digit_folder(tmp_path / "digits", digits=(0, 1, 7), per_class=60)
    run = tmp_path / "run"
    train(compose_config([*QUIET, "model=cvae2", "data=folder", f"data.root={tmp_path / 'digits'}", "data.binarize=dynamic",
                          "trainer.max_epochs=30", "~logger", f"run_dir={run}"]))
    files = sorted((tmp_path / "digits").rglob("*.png"))[::15]  # a handful of the images, every class
    np.save(tmp_path / "some.npy", np.stack([np.asarray(Image.open(f)) for f in files[:2]]))
    classify_main([str(run), "--images", *map(str, files), str(tmp_path / "some.npy"), "--out", str(tmp_path / "c")])
    with open(tmp_path / "c" / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["file", "predicted", "probability", *[f"p_{n}" for n in names]]
    assert [r["file"] for r in rows] == [*map(str, files), *[f"{tmp_path / 'some.npy'}[{i}]" for i in range(2)]]
    truth = [f.parent.name for f in files]
    correct = sum(r["predicted"] == t for r, t in zip(rows, truth))
    assert correct >= 0.8 * len(files), (correct, len(files))  # chance is 1/3
    assert [r["predicted"] for r in rows[-2:]] == [r["predicted"] for r in rows[:2]]  # the same pixels, from .npy
    assert "written to" in capsys.readouterr().out
    generate_main([str(run), "-n", "2", "--each", "--n-examples", "0", "--out", str(tmp_path / "g")])
    written = sorted(p.name for p in (tmp_path / "g" / "samples").iterdir())
    assert written == sorted(f"{n}_{j}.png" for n in names for j in range(2))
    assert Image.open(tmp_path / "g" / "samples" / written[0]).size == (28, 28)


def test_colour_images_train_with_conv_nets_and_report_bits_per_dim(tmp_path):
    """RGB 8-bit images: the conv net, the discretised logistic likelihood (the default) and bits/dim."""
    for name, colour in (("red", (200, 40, 40)), ("blue", (40, 40, 200))):
        (tmp_path / "c" / name).mkdir(parents=True)
        rng = np.random.default_rng(len(name))
        for i in range(40):
            noise = rng.integers(0, 40, (12, 12, 3))
            Image.fromarray((np.array(colour) + noise).clip(0, 255).astype(np.uint8)).save(tmp_path / "c" / name / f"{i}.png")
    cfg = compose_config([*QUIET, "model=cvae1", "net=conv", "data=folder", f"data.root={tmp_path / 'c'}",
                          "data.batch_size=16", "trainer.max_epochs=40", "~logger", f"run_dir={tmp_path / 'run'}"])
    metrics = train(cfg)
    x_dims = 3 * 12 * 12
    assert metrics["test/bpd"] == pytest.approx(-metrics["test/elbo"] / (x_dims * np.log(2)), rel=1e-5)
    assert 0 < metrics["test/bpd"] < 8  # better than the 8 bits of a uniform guess over 256 levels
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["model"] == "cvae1"


def test_an_idx_folder_with_only_the_test_files_scores_a_trained_model(fitted, tmp_path, capsys):
    from conftest import write_fake_idx_dir

    from cvaezoo.cli import evaluate_main

    root = write_fake_idx_dir(tmp_path / "t10k_only", n_test=30)
    for part in ("images-idx3", "labels-idx1"):
        (root / f"train-{part}-ubyte.gz").unlink()
    data = ["data=idx", f"data.root={root}"]
    classify_main([str(fitted["cvae1"]), *data, "--out", str(tmp_path / "c")])
    metrics = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert metrics["split"] == "test" and len(metrics["confusion_matrix"]) == 10
    evaluate_main([str(fitted["cvae1"]), *data, "-k", "2", "--out", str(tmp_path / "e")])
    assert json.loads((tmp_path / "e" / "evaluation.json").read_text())["test/elbo"] < 0
    with pytest.raises(SystemExit):  # asking for the training split names the missing file
        classify_main([str(fitted["cvae1"]), *data, "--split", "train", "--out", str(tmp_path / "t")])
    assert f"missing IDX file train-images-idx3-ubyte[.gz] in {root}" in capsys.readouterr().err
