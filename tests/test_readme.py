"""The README stays true: its Python snippet runs, its training examples compose and build, and its
command-line examples that need no external data run against a trained model."""

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import SMALL_MNIST, compose_overrides

from cvaezoo.runs import build

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
EXTERNAL = ("/data/", "<")  # arguments that name a user's files or a placeholder
DOWNLOADS = ("data=mnist", "data=fashion_mnist", "data=cifar10")  # tested against a local server in test_download


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def commands(block: str, program: str) -> list[list[str]]:
    """The argument lists of each ``program`` line of a shell block (continuations joined, comments dropped)."""
    lines = block.replace("\\\n", " ").splitlines()
    return [shlex.split(line, comments=True) for line in lines if line.startswith(program)]


def all_training_examples() -> list[list[str]]:
    return [args for block in code_blocks("bash") for args in commands(block, "cvaezoo-train ")]


def needs_files(args: list[str]) -> bool:
    return any(mark in arg for arg in args for mark in EXTERNAL) or any(arg in DOWNLOADS for arg in args)


def training_examples() -> list[list[str]]:
    return [args for args in all_training_examples() if not needs_files(args)]


@pytest.mark.parametrize("args", [a for a in all_training_examples() if needs_files(a)],
                         ids=lambda args: " ".join(args[1:]))
def test_readme_examples_that_need_files_compose(args):
    """Examples naming a user's folder or a download are not built here, but their overrides must compose."""
    overrides = [re.sub(r"<[^>]*>", "placeholder", a) for a in args[1:] if a != "-m"]
    cfg = compose_overrides(*overrides, "run_dir=.")
    assert cfg.data._target_.startswith("cvaezoo.data.")


def test_readme_has_the_documented_examples():
    assert len(training_examples()) >= 8
    assert any("load_model(" in block for block in code_blocks("python"))


@pytest.mark.parametrize("args", training_examples(), ids=lambda args: " ".join(args[1:]) or "default")
def test_readme_training_example_composes_and_builds(args):
    overrides = [a for a in args[1:] if a != "-m"]
    cfg = compose_overrides(*overrides, "run_dir=.")
    datamodule, model = build(cfg)
    assert model.x_shape == tuple(datamodule.spec.x_shape)


def test_readme_python_snippet_runs_on_a_trained_model(fitted):
    (snippet,) = [block for block in code_blocks("python") if "runs/cvae1/<date_time>" in block]
    assert "load_model(" in snippet
    namespace: dict = {}
    run = str(fitted["cvae1"])
    small = f'TrainedRun.open("{run}", {SMALL_MNIST!r})'  # the run's own small split (it has no Hydra record)
    exec(snippet.replace('TrainedRun.open("runs/cvae1/<date_time>")', small).replace("runs/cvae1/<date_time>", run),
         namespace)
    assert namespace["images"].shape == (2, 16, 1, 28, 28)
    assert namespace["probs"].shape == (16, 10) and torch.allclose(namespace["probs"].sum(1), torch.ones(16))
    assert namespace["log_px"].shape == (16,)
    assert namespace["scores"]["test/iwae_k100"] > namespace["scores"]["test/elbo"]
    assert namespace["predicted"].shape == (200, 10) and set(namespace["grids"]) >= {"samples", "reconstruction"}


@pytest.mark.slow
def test_readme_command_line_examples_run(fitted, tmp_path):
    """Every cvaezoo-* line of the 'Using a trained model' block, with $run a trained CVAE-1."""
    (block,) = [b for b in code_blocks("bash") if b.startswith("run=runs/cvae1/")]
    examples = [args for args in commands(block, "cvaezoo-") if not any("/data/" in a for a in args)]
    assert {args[0] for args in examples} >= {"cvaezoo-classify", "cvaezoo-generate", "cvaezoo-reference", "cvaezoo-evaluate"}
    examples.sort(key=lambda args: args[0] != "cvaezoo-reference")  # the reference classifier first: evaluate uses it
    for args in examples:
        args = [str(fitted["cvae1"]) if a == "$run" else a for a in args]
        if args[0] == "cvaezoo-reference":
            args.append("trainer.max_epochs=1")  # the example as written, shortened: its quality is not tested here
        done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (args, done.stderr[-3000:])
    # a run trained in-process has no .hydra record, so the tools write beside its checkpoint
    (evaluation,) = fitted["cvae1"].rglob("evaluate/evaluation.json")
    assert "generation_accuracy" in evaluation.read_text()  # evaluate found the reference the README told us to train
    scores = json.loads(evaluation.read_text())
    assert {"frechet_distance", "kernel_distance", "precision", "recall", "frechet_distance_floor", "kernel_distance_floor",
            "precision_ceiling", "recall_ceiling"} <= scores.keys()
    assert scores["frechet_distance_floor"] < scores["frechet_distance"]  # one epoch: far from the data


def test_readme_pretrained_snippet_loads_the_shipped_model():
    (snippet,) = [block for block in code_blocks("python") if '"mnist5k/' in block]
    namespace: dict = {}
    exec(snippet, namespace)
    assert namespace["model"].model_name == "cvae3"


@pytest.mark.slow
def test_readme_pretrained_model_commands_run_from_an_empty_folder(tmp_path):
    """Every line of the 'Pretrained models' block, in a folder that holds only the digit the block classifies."""
    from PIL import Image

    (block,) = [b for b in code_blocks("bash") if b.startswith("cvaezoo-models")]
    examples = commands(block, "cvaezoo-")
    assert {args[0] for args in examples} == {"cvaezoo-models", "cvaezoo-generate", "cvaezoo-classify", "cvaezoo-evaluate"}
    Image.new("L", (28, 28), 0).save(tmp_path / "my_digit.png")
    for args in examples:
        done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (args, done.stderr[-3000:])
    assert (tmp_path / "generate" / "mnist5k_cvae1" / "samples.png").is_file()
    assert "generation_accuracy" in (tmp_path / "evaluate" / "mnist5k_cvae2" / "evaluation.json").read_text()
