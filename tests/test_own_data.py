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
from cvaezoo.data.images import is_grey, load_inputs, read_image
from cvaezoo.distributions import pixel_likelihood
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


def write_label_table(root, labels: list[str]) -> None:
    """A table giving the digit images under ``root`` the ``labels`` in turn."""
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    with open(root / "t.csv", "w", newline="") as f:
        csv.writer(f).writerows([["file", "label"], *[[name, labels[i % len(labels)]] for i, name in enumerate(files)]])


def test_table_labels_are_stripped_and_integers_ordered_as_numbers(tmp_path):
    write_digit_folder(tmp_path / "d", digits=(0, 1), per_class=12)
    padded = [f" {i}" if i % 2 else f"{i:02d} " for i in range(12)]  # " 3" and "3", "04 " and "4": one class each
    write_label_table(tmp_path / "d", [str(i) for i in range(12)] + padded)
    data = ImageFolder(root=str(tmp_path / "d"), table="t.csv")
    _, labels = data.load()
    assert data.class_names == [str(i) for i in range(12)] and data.num_classes == 12  # 2 before 10
    assert labels.tolist() == [i % 12 for i in range(24)]  # each row keeps its number as its class index
    write_label_table(tmp_path / "d", ["2", "10", " cat ", "10"])  # not all integers: ordered as strings
    data = ImageFolder(root=str(tmp_path / "d"), table="t.csv")
    _, labels = data.load()
    assert data.class_names == ["10", "2", "cat"] and labels.tolist()[:4] == [1, 0, 2, 0]
    write_label_table(tmp_path / "d", ["1", "2", " "])
    with pytest.raises(UserError, match=r"t.csv, line 4: empty label in column 'label'"):
        ImageFolder(root=str(tmp_path / "d"), table="t.csv").load()


def test_subfolders_named_by_integers_are_ordered_as_numbers(tmp_path):
    """Class folders 2, 10, 9: classes 2, 9, 10 (as strings they would sort 10, 2, 9)."""
    for name in ("2", "10", "9"):
        (tmp_path / "d" / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8), 10 * int(name), dtype=np.uint8)).save(tmp_path / "d" / name / f"{i}.png")
    data = ImageFolder(root=str(tmp_path / "d"))
    images, labels = data.load()
    assert data.class_names == ["2", "9", "10"]
    assert [round(float(images[labels == k].mean()) * 255) for k in range(3)] == [20, 90, 100]


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
    cfg = compose_config(["data=cifar10", f"data.root={tmp_path / 'cifar'}", "data.val_size=10", "data.sha256=null",
                          "data.mirrors=[]"])  # a local copy: no pin needed
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
    with pytest.raises(UserError, match=r"bad.npy\[0\]: 25 pixel values outside \[0, 1\]; float pixels must be finite "
                                        r"and lie in \[0, 1\] .* \(and 1 more images\)"):
        load_inputs([tmp_path / "bad.npy"], (1, 28, 28))
    np.save(tmp_path / "nan.npy", np.full((1, 5, 5), np.nan, dtype=np.float32))  # refused, not thresholded to 0
    with pytest.raises(UserError, match=r"nan.npy\[0\]: 25 non-finite pixel values"):
        load_inputs([tmp_path / "nan.npy"], (1, 28, 28))
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
    evaluate_main([str(fitted["cvae1"]), *data, "--iwae-samples", "2", "--out", str(tmp_path / "e")])
    assert json.loads((tmp_path / "e" / "evaluation.json").read_text())["test/elbo"] < 0
    with pytest.raises(SystemExit):  # asking for the training split names the missing file
        classify_main([str(fitted["cvae1"]), *data, "--split", "train", "--out", str(tmp_path / "t")])
    assert f"missing IDX file train-images-idx3-ubyte[.gz] in {root}" in capsys.readouterr().err


# Every mode Pillow opens, written as a small file (PNG where Pillow writes the mode, else TIFF) and read back.
GREY_RAMP = np.arange(256, dtype=np.uint8).reshape(16, 16)  # every 8-bit level once
DEEP_RAMP = np.linspace(0, 65535, 1024).round().astype(np.uint16).reshape(32, 32)  # 1024 16-bit levels, 0 and 65535
COLOURS = np.stack([GREY_RAMP, 255 - GREY_RAMP, GREY_RAMP // 2], axis=-1)  # (16, 16, 3): 256 distinct colours
ALPHA = np.repeat(np.array([0, 64, 128, 255], dtype=np.uint8), 4)[:, None].repeat(16, axis=1)  # rows: 0 .. opaque


def palette_image(transparent: bool) -> Image.Image:
    picture = Image.frombytes("P", (16, 16), GREY_RAMP.tobytes())
    picture.putpalette(COLOURS.reshape(-1).tolist())
    if transparent:
        picture.info["transparency"] = 0  # palette entry 0 (the first pixel) is transparent
    return picture


def over_black(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The documented rule: a pixel keeps alpha/255 of its colour (transparency composited onto black)."""
    return colour.astype(np.float64) * (alpha.astype(np.float64) / 255)[..., None] / 255


def cmyk_pixels() -> tuple[Image.Image, np.ndarray]:
    cmyk = np.array([[[255, 0, 0, 0], [0, 0, 0, 255], [0, 0, 0, 0], [0, 128, 0, 0]]], dtype=np.uint8)
    rgb = (255 - cmyk[..., :3].astype(np.float64)) * (255 - cmyk[..., 3:].astype(np.float64)) / 255 / 255
    return Image.frombytes("CMYK", (4, 1), cmyk.tobytes()), rgb  # cyan, black, white, half magenta


def with_alpha(mode: str, colour: np.ndarray) -> Image.Image:
    picture = (palette_image(False) if mode == "PA" else Image.fromarray(colour)).convert(mode)  # PA: COLOURS' palette
    picture.putalpha(Image.fromarray(ALPHA))
    return picture


def transparent_palette() -> np.ndarray:
    expected = COLOURS / 255
    expected[0, 0] = 0  # the transparent pixel composited onto black
    return expected


MODES = {  # mode: (the image, the file suffix, the expected (H, W, C) pixels in [0, 1], distinct levels or None)
    "1": (lambda: Image.fromarray(GREY_RAMP % 2 == 1), ".png", lambda: (GREY_RAMP % 2)[..., None], 2),
    "L": (lambda: Image.fromarray(GREY_RAMP), ".png", lambda: GREY_RAMP[..., None] / 255, 256),
    "P": (lambda: palette_image(False), ".png", lambda: COLOURS / 255, None),
    "P+transparency": (lambda: palette_image(True), ".png", transparent_palette, None),
    "PA": (lambda: with_alpha("PA", COLOURS), ".tif", lambda: over_black(COLOURS, ALPHA), None),
    "LA": (lambda: with_alpha("LA", GREY_RAMP), ".png", lambda: over_black(GREY_RAMP[..., None], ALPHA), None),
    "RGB": (lambda: Image.fromarray(COLOURS), ".png", lambda: COLOURS / 255, None),
    "RGBA": (lambda: with_alpha("RGBA", COLOURS), ".png", lambda: over_black(COLOURS, ALPHA), None),
    "CMYK": (lambda: cmyk_pixels()[0], ".tif", lambda: cmyk_pixels()[1], None),
    "YCbCr": (lambda: Image.merge("YCbCr", [Image.fromarray(GREY_RAMP), *[Image.new("L", (16, 16), 128)] * 2]),
              ".tif", lambda: GREY_RAMP[..., None].repeat(3, axis=-1) / 255, 256),  # neutral chroma: grey, in RGB
    "I": (lambda: Image.fromarray(DEEP_RAMP.astype(np.int32)), ".tif", lambda: DEEP_RAMP[..., None] / 65535, 1024),
    "I;16": (lambda: Image.fromarray(DEEP_RAMP), ".png", lambda: DEEP_RAMP[..., None] / 65535, 1024),
    "I;16B": (lambda: Image.fromarray(DEEP_RAMP.astype(">u2")), ".tif", lambda: DEEP_RAMP[..., None] / 65535, 1024),
    "F": (lambda: Image.fromarray((DEEP_RAMP / 65535).astype(np.float32)), ".tif",
          lambda: (DEEP_RAMP / 65535).astype(np.float32)[..., None], 1024),
}


@pytest.mark.parametrize("case", sorted(MODES))
def test_every_pillow_mode_is_read_on_its_own_scale(tmp_path, case):
    make, suffix, expected, levels = MODES[case]
    path = tmp_path / f"image{suffix}"
    make().save(path)
    with Image.open(path) as saved:
        assert saved.mode == case.split("+")[0]  # the file really holds the mode under test
    want = torch.from_numpy(np.asarray(expected(), dtype=np.float64)).permute(2, 0, 1).float()
    channels = want.shape[0]
    assert is_grey(path) == (channels == 1)
    x = read_image(path, channels)
    rounded = "A" in case or "transparency" in case or case == "CMYK"  # Pillow rounds these to 8 bits
    tolerance = 1.01 / 255 if rounded else 1e-6
    assert x.shape == want.shape and torch.allclose(x, want, atol=tolerance, rtol=0), (x - want).abs().max()
    if levels is not None:
        assert len(torch.unique(x)) == levels and x.min() == 0 and x.max() == 1
    other = read_image(path, 4 - channels)  # grey as three equal channels; colour to grey with Pillow's weights
    grey = (want * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0, keepdim=True) if channels == 3 else want
    assert torch.allclose(other, grey.expand_as(other), atol=tolerance + 1.01 / 255, rtol=0)


def test_deep_images_keep_their_levels_when_resized_and_refuse_values_off_their_scale(tmp_path):
    Image.fromarray(DEEP_RAMP).save(tmp_path / "deep.png")
    x = read_image(tmp_path / "deep.png", 1, size=16)
    assert x.shape == (1, 16, 16) and 0 <= x.min() and x.max() <= 1 and len(torch.unique(x)) > 200
    assert x.mean().item() == pytest.approx(0.5, abs=0.01)
    Image.fromarray(np.array([[0, 70000]], dtype=np.int32)).save(tmp_path / "wide.tif")
    with pytest.raises(UserError, match=r"wide.tif: 32-bit integer pixels must lie in 0\.\.65535.*found 0\.\.70000"):
        read_image(tmp_path / "wide.tif", 1)
    for name, values in (("bright.tif", [0.0, 1.5]), ("nan.tif", [0.0, np.nan])):
        Image.fromarray(np.array([values], dtype=np.float32)).save(tmp_path / name)
        with pytest.raises(UserError, match=rf"{name}: float pixels must lie in \[0, 1\]"):
            read_image(tmp_path / name, 1)
    Image.new("LAB", (2, 2)).save(tmp_path / "lab.tif")
    with pytest.raises(UserError, match=r"lab.tif: Pillow mode LAB is not supported"):
        read_image(tmp_path / "lab.tif", 3)


def test_a_folder_of_16_bit_images_is_not_taken_for_8_bit(tmp_path):
    for name, scale in (("deep", 1), ("eight", 257)):  # 8-bit values stored in 16 bits (v * 257) stay 8-bit
        for label in ("a", "b"):
            (tmp_path / name / label).mkdir(parents=True)
            for i in range(5):
                values = (DEEP_RAMP // 257 * scale if scale > 1 else DEEP_RAMP).astype(np.uint16)
                Image.fromarray(np.roll(values, i)).save(tmp_path / name / label / f"{i}.png")
    deep = ImageFolder(root=str(tmp_path / "deep"), split=[6, 2, 2])
    assert deep.spec.pixel_levels == 65536 and pixel_likelihood(deep.spec.pixel_levels) == "continuous_bernoulli"
    assert len(torch.unique(deep.split_tensors("train")[0])) == 1024
    assert ImageFolder(root=str(tmp_path / "eight"), split=[6, 2, 2]).spec.pixel_levels == 256
