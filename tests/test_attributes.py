"""Multi-hot attribute conditions: the generated shapes, the CelebA-style reader, CVAE-4 on attributes."""

import pytest
import torch
from conftest import write_celeba_fixture

from cvaezoo.attributes import attribute_loss, attributes_from_scores, group_matches
from cvaezoo.data import AttributeFolder, Shapes
from cvaezoo.data.shapes import SHAPE_FACTORS
from cvaezoo.figures import attribute_edit_grid
from cvaezoo.inference import attribute_generation_accuracy, distinct_rows
from cvaezoo.train import train

GROUPS = [len(v) for v in SHAPE_FACTORS.values()]


def test_shapes_are_deterministic_for_a_seed_and_differ_across_seeds():
    a, b, c = Shapes(split_seed=3), Shapes(split_seed=3), Shapes(split_seed=4)
    for name in ("train", "val", "test", "unseen"):
        assert all(torch.equal(u, v) for u, v in zip(a.spec and a.splits[name].tensors, b.spec and b.splits[name].tensors))
    c.setup()
    assert a.heldout_combinations() != c.heldout_combinations()
    assert not torch.equal(a.splits["train"].tensors[1], c.splits["train"].tensors[1])


def test_attributes_determine_the_image_and_every_combination_looks_different():
    data = Shapes(heldout=0)
    x, y = data.spec and data.splits["train"].tensors
    for combination in distinct_rows(y)[:20]:
        images = x[(y == combination).all(1)]
        assert len(images) > 1 and (images == images[0]).all()  # equal attributes, equal images
    renders = torch.stack([data.render(c) for c in data.all_combinations()])
    assert len(renders) == 144 and len(torch.unique(renders.flatten(1), dim=0)) == 144
    assert set(renders.unique().tolist()) == {0.0, 1.0}
    assert y.shape[1] == 14 and torch.equal(y.sum(1), torch.full((len(y),), 5.0))  # one bit per group


def test_colour_shapes_are_8_bit_rgb_and_the_colour_is_an_attribute_group():
    data = Shapes(colour=True, heldout=24, split=(300, 50, 50))
    spec = data.spec
    assert spec.x_shape == (3, 24, 24) and spec.y_dim == 18 and spec.attribute_groups == (*GROUPS, 4)
    assert spec.pixel_levels == 256  # the likelihood defaults to the discretised logistic
    renders = torch.stack([data.render(c) for c in data.all_combinations()])
    assert len(renders) == 576 and len(torch.unique(renders.flatten(1), dim=0)) == 576
    levels = (renders * 255).round()
    assert torch.allclose(renders * 255, levels, atol=1e-4) and len(levels.unique()) > 2  # 8-bit, not 0/1
    red = data.render(data.all_combinations()[0])  # square, small, left, top, outline, red
    ink = red[:, (red[0] - red[1]).abs() > 0.1]  # pixels of the shape
    assert ink.shape[1] > 0 and torch.allclose(ink[:, 0] * 255, torch.tensor([220.0, 50, 47]), atol=1e-3)
    vector = data.attribute_vector("shape=circle,size=large,column=left,row=top,fill=filled,colour=blue")
    assert vector.sum() == 6
    with pytest.raises(ValueError, match="exactly one of .*attribute group 'colour'"):
        data.attribute_vector("shape=circle,size=large,column=left,row=top,fill=filled")


def test_heldout_combinations_never_reach_training_but_every_value_does():
    data = Shapes(heldout=12, split=(500, 100, 100))
    data.setup()
    heldout = distinct_rows(data.splits["unseen"].tensors[1])
    assert len(heldout) == 12
    for name in ("train", "val", "test"):
        y = data.splits[name].tensors[1]
        assert not (y[:, None, :] == heldout[None]).all(-1).any()
    assert (data.splits["train"].tensors[1].sum(0) > 0).all()  # each attribute value is seen in training
    with pytest.raises(ValueError, match="data.heldout must lie in"):
        Shapes(heldout=144)


def test_attribute_vector_parsing():
    data = Shapes()
    vector = data.attribute_vector("shape=circle,size=large,column=left,row=top,fill=filled")
    assert vector.sum() == 5 and vector[data.attribute_names.index("shape=circle")] == 1
    with pytest.raises(ValueError, match="unknown attributes \\['shape=star'\\]"):
        data.attribute_vector("shape=star")
    with pytest.raises(ValueError, match="exactly one of .*attribute group 'size'"):
        data.attribute_vector("shape=circle,size=large,size=small,column=left,row=top,fill=filled")


def test_grouped_attribute_helpers():
    scores = torch.tensor([[2.0, 0.5, -1.0, 3.0], [0.0, 1.0, 0.2, -3.0]])  # groups: one-of-3, binary
    predicted = attributes_from_scores(scores, [3, 1])
    assert torch.equal(predicted, torch.tensor([[1.0, 0, 0, 1], [0, 1, 0, 0]]))
    target = torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0]])
    assert torch.equal(group_matches(predicted, target, [3, 1]), torch.tensor([[True, False], [True, True]]))
    expected = -torch.log_softmax(scores[:, :3], 1)[:, 0][0] + torch.nn.functional.softplus(scores[0, 3])
    assert attribute_loss(scores, target, [3, 1])[0] == pytest.approx(float(expected))


def test_celeba_style_folder_reader(tmp_path):
    names = write_celeba_fixture(tmp_path)
    data = AttributeFolder(root=str(tmp_path), attr_file="attrs.txt", image_dir="images", partition_file="partition.txt",
                           image_size=6, channels=3)
    spec = data.spec
    assert spec.x_shape == (3, 6, 6) and spec.y_kind == "multihot" and spec.y_dim == 3
    x, y = data.splits["train"].tensors
    assert len(x) == 4 and len(data.splits["val"].tensors[0]) == 1 and len(data.splits["test"].tensors[0]) == 1
    assert data.attribute_names == names and data.attribute_groups == [1, 1, 1]
    assert torch.equal(y[3], torch.tensor([1.0, 1.0, 0.0]))  # image 3: bits 0 and 1 on
    assert x[1, 0, 0, 0] == pytest.approx(40 / 255, abs=0.01)  # the red level of image 1, after resizing
    grey = AttributeFolder(root=str(tmp_path), attr_file="attrs.txt", image_dir="images", attributes=["Smiling"],
                           image_size=4, channels=1, split=(3, 1, 1), limit=5)
    assert grey.spec.x_shape == (1, 4, 4) and grey.spec.y_dim == 1 and grey.attribute_names == ["Smiling"]
    assert torch.equal(grey.attribute_vector("Smiling"), torch.tensor([1.0]))


def test_celeba_style_reader_errors(tmp_path):
    write_celeba_fixture(tmp_path)
    def folder(**kwargs):
        base = {"root": str(tmp_path), "attr_file": "attrs.txt", "image_dir": "images", "split": (3, 1, 1)}
        return AttributeFolder(**{**base, **kwargs}).spec

    with pytest.raises(FileNotFoundError, match="attribute file .*missing.txt not found"):
        folder(attr_file="missing.txt")
    with pytest.raises(ValueError, match="data.attributes \\['Bald'\\] are not in"):
        folder(attributes=["Bald"])
    (tmp_path / "images" / "000002.png").unlink()
    with pytest.raises(FileNotFoundError, match="image .*000002.png listed in attrs.txt not found"):
        folder()
    (tmp_path / "attrs.txt").write_text("2\nMale Smiling\n000000.png 1\n")
    with pytest.raises(ValueError, match="line 3: 1 values for 2 attributes"):
        folder()


class TemplateJudge:
    """An exact attribute classifier for the shapes: the attributes of the nearest rendered image."""

    device = torch.device("cpu")
    groups = GROUPS

    def __init__(self, data: Shapes):
        from cvaezoo.data.shapes import combination_vector

        combinations = data.all_combinations()
        self.templates = torch.stack([data.render(c) for c in combinations]).flatten(1)
        self.vectors = torch.stack([combination_vector(c) for c in combinations])

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.vectors[torch.cdist(x.flatten(1), self.templates, p=1).argmin(1)]


def test_short_cvae4_fit_generates_the_requested_attributes(compose_config, tmp_path):
    cfg = compose_config("model=cvae4", "data=shapes", "data.split=[1000,100,100]", "data.batch_size=32", "trainer.max_epochs=10", "model.lr=3e-3",
                         "net.hidden=[128,64]", "~logger")
    train(cfg)
    from cvaezoo.models import CVAE4

    model = CVAE4.load_from_checkpoint(tmp_path / "checkpoints" / "best.ckpt").eval()
    data = Shapes(split=(1000, 100, 100))
    data.setup()
    torch.manual_seed(0)
    seen = attribute_generation_accuracy(model, TemplateJudge(data), distinct_rows(data.splits["train"].tensors[1]), 10)
    chance = sum(1 / k for k in GROUPS) / len(GROUPS)  # 0.38
    assert seen["attribute_accuracy"] > chance + 0.3, seen
    assert seen["exact_match"] > 0.1  # chance: 1/144
    unseen = attribute_generation_accuracy(model, TemplateJudge(data), data.splits["unseen"].tensors[1], 10)
    assert unseen["combinations"] == 12 and unseen["attribute_accuracy"] > chance
    x, y = data.splits["test"].tensors
    grid = attribute_edit_grid(model, x[:3], y[:3], group=0, groups=GROUPS)  # resample z ~ p(z|y') per shape
    assert grid.shape == (3, 5, 1, 24, 24)


def test_command_line_tools_on_attribute_data(compose_config, tmp_path):
    """cvaezoo-evaluate scores seen and unseen combinations; cvaezoo-generate samples chosen attributes and edits."""
    import json

    from cvaezoo.cli import evaluate_main, generate_main
    from cvaezoo.runs import compose_config as compose_run_config

    data = ["data=shapes", "data.split=[300,50,50]"]
    train(compose_config("model=cvae1", *data, "trainer.max_epochs=1", "~logger"))
    cfg = compose_run_config(["data=shapes", "data.heldout=0", "data.split=[300,50,50]", "trainer.max_epochs=1",
                              "trainer.enable_progress_bar=false", f"run_dir={tmp_path / 'ref'}"], config_name="reference")
    train(cfg)  # the reference classifier trains through the same train() as every model
    checkpoint = str(tmp_path / "checkpoints" / "best.ckpt")
    evaluate_main([checkpoint, *data, "--iwae-samples", "2", "--n-per-class", "2", "--reference", str(tmp_path / "ref"),
                   "--out", str(tmp_path / "e")])
    evaluation = json.loads((tmp_path / "e" / "evaluation.json").read_text())
    assert 100 < evaluation["combinations_seen"] <= 132 and evaluation["combinations_unseen"] == 12  # distinct train rows
    assert evaluation["frechet_distance_seen"] > 0 and evaluation["frechet_distance_unseen"] > 0
    assert {f"{key}_{name}" for key in ("precision", "recall") for name in ("seen", "unseen")} <= evaluation.keys()
    # averages over exactly the samples asked for: 2 per combination, 5 attribute groups each
    for name, count in (("unseen", 12), ("seen", evaluation["combinations_seen"])):
        for key, scored in (("attribute_accuracy", 2 * count * 5), ("exact_match", 2 * count)):
            assert evaluation[f"{key}_{name}"] * scored == pytest.approx(round(evaluation[f"{key}_{name}"] * scored), abs=1e-3)
        per_group = evaluation[f"group_accuracy_{name}"]  # one per group, averaging to the attribute accuracy
        assert len(per_group) == 5 and sum(per_group) / 5 == pytest.approx(evaluation[f"attribute_accuracy_{name}"])
    evaluate_main([checkpoint, *data, "--iwae-samples", "2", "--split", "unseen", "--out", str(tmp_path / "u")])
    assert json.loads((tmp_path / "u" / "evaluation.json").read_text())["unseen/elbo"] < 0
    generate_main([checkpoint, *data, "--attributes", "shape=circle,size=large,column=left,row=top,fill=filled",
                   "shape=cross,size=small,column=right,row=bottom,fill=outline", "-n", "3", "--n-examples", "4",
                   "--out", str(tmp_path / "g")])
    written = {p.name for p in (tmp_path / "g").iterdir()}
    assert {"samples.png", "samples.npz", "reconstruction.png"} | {f"edit_{g}.png" for g in SHAPE_FACTORS} <= written
    with pytest.raises(SystemExit):
        generate_main([checkpoint, *data, "--labels", "3", "--out", str(tmp_path / "g")])
