"""Every zoo model through every tool, as a user runs them and as one library call each: classify, generate and
evaluate on a short fit (the same tests run a model added as a file and a config: tests/test_new_model.py)."""

import csv
import json

import pytest
import torch
from conftest import MODEL_NAMES, SMALL_MNIST

from cvaezoo.cli import classify_main, evaluate_main, generate_main
from cvaezoo.runs import saved_overrides
from cvaezoo.tools import classification, evaluation
from cvaezoo.trained_run import TrainedRun


def assert_same(returned: dict, written: dict) -> None:
    """The library's dictionary is the file's: numbers up to JSON's rounding, everything else equal."""
    assert set(returned) == set(written)
    for key, value in returned.items():
        assert value == (pytest.approx(written[key]) if isinstance(value, float) else written[key]), key


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_tool_runs_on_the_model_and_the_command_line_writes_what_the_library_returns(fitted, tmp_path, name):
    run_dir = fitted[name]
    run = TrainedRun.open(run_dir, SMALL_MNIST)
    assert run.source == run_dir / "checkpoints" / "best.ckpt" and run.model.model_name == name

    classify_main([str(run_dir), *SMALL_MNIST, "--out", str(tmp_path / "classify")])
    written = json.loads((tmp_path / "classify" / "metrics.json").read_text())
    mode = run.model.classifier_mode()  # the declared default, the first of classifier_methods
    assert (written["method"], written["samples"]) == (mode.method, mode.samples)
    assert written["accuracy"] > 0.4  # chance is 0.1
    with open(tmp_path / "classify" / "predictions.csv") as f:
        assert len(list(csv.DictReader(f))) == 200  # the test split of SMALL_MNIST
    torch.manual_seed(0)  # as the tool does with --seed 0
    returned = classification(TrainedRun.open(run_dir, SMALL_MNIST)).metrics
    assert_same(returned, written)

    generate_main([str(run_dir), *SMALL_MNIST, "-n", "2", "--n-examples", "2", "--out", str(tmp_path / "generate")])
    made = {p.name for p in (tmp_path / "generate").iterdir()}
    assert "samples.png" in made  # label-conditioned samples (a model of y: the test images it puts in each class)

    evaluate_main([str(run_dir), *SMALL_MNIST, "--iwae-samples", "3", "--out", str(tmp_path / "evaluate")])
    written = json.loads((tmp_path / "evaluate" / "evaluation.json").read_text())
    assert written["test/iwae_k3"] >= written["test/elbo"] - 5.0 and written["test/accuracy"] > 0.4
    torch.manual_seed(0)
    returned = evaluation(TrainedRun.open(run_dir, SMALL_MNIST), iwae_samples=3, log=lambda line: None)
    assert_same(returned, written)


def test_the_reference_is_found_for_the_runs_data_in_the_folder_it_was_trained_from(tmp_path, monkeypatch):
    """The rule, written once: where cvaezoo-reference puts the reference for the run's data (runs/reference/<data>),
    in the folder the run's Hydra record says it was trained from; not the current folder, not a fixed dataset."""
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    for root in (project, elsewhere):  # a reference for the digits in both folders, one for mnist5k in neither
        (root / "runs" / "reference" / "digits" / "checkpoints").mkdir(parents=True)
    run_dir = tmp_path / "moved" / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "hydra.yaml").write_text(f"hydra:\n  runtime:\n    cwd: {project}\n")
    (run_dir / ".hydra" / "overrides.yaml").write_text("- model=cvae1\n- data=digits\n")
    monkeypatch.chdir(elsewhere)
    run = TrainedRun(run_dir / "checkpoints" / "best.ckpt", run_dir, model=None,
                     training_overrides=saved_overrides(run_dir))
    assert run.reference_dir() == project / "runs" / "reference" / "digits"
    assert TrainedRun(run.source, run_dir, None, ["data=mnist5k"], run.training_overrides).reference_dir() is None  # the user's data
    # a checkpoint without a record: the default data (mnist5k), in the current folder
    assert TrainedRun(tmp_path / "bare.ckpt", None, None, ["data=digits"]).reference_dir() == \
        elsewhere / "runs" / "reference" / "digits"
