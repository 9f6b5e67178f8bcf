"""Every option and input of every tool, given a bad value as a new user would: one line on stderr,
``<tool>: error: ...`` naming the option or file, exit status 2, and nothing written or lost (the run
directory stays as it was, byte for byte)."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import torch
from conftest import QUIET, compose_overrides

from cvaezoo.cli import classify_main, evaluate_main, generate_main
from cvaezoo.collect import main as collect_main
from cvaezoo.config_types import check_config, fits
from cvaezoo.models import ClassifierMode
from cvaezoo.reference import main as reference_main
from cvaezoo.runs import compose_config as compose_run_config
from cvaezoo.train import main as train_main

TRAIN = ["data.split=[64,32,32]", "data.batch_size=32", "trainer.max_epochs=1", "net.hidden=[32]", *QUIET]


def hydra_main(main: Callable[[], object], argv: list[str]) -> None:
    """A Hydra entry point run in-process with these command-line arguments."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.argv", ["cvaezoo-train", *argv])
        patch.delenv("HYDRA_FULL_ERROR", raising=False)
        main()


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A one-epoch CVAE-1 run on 64 embedded digits, made by cvaezoo-train (so it has Hydra's record)."""
    run_dir = tmp_path_factory.mktemp("bad_input") / "run"
    hydra_main(train_main, [*TRAIN, f"hydra.run.dir={run_dir}"])
    return run_dir


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
    """Bad inputs a user may hand a tool, by name: {NAME} in a case's arguments is replaced by its path."""
    root = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    good = rng.random((3, 28, 28), dtype=np.float32)
    for name, value in (("nan", np.nan), ("inf", np.inf), ("above_one", 1.5)):
        batch = good.copy()
        batch[1, 3, 4] = value
        np.save(root / f"{name}.npy", batch)
    np.save(root / "negative.npy", -good)
    np.save(root / "empty.npy", np.zeros((0, 28, 28), np.float32))
    np.save(root / "wrong_shape.npy", np.zeros((3, 5), np.float32))
    np.save(root / "strings.npy", np.array(["a", "b"]))
    (root / "corrupt.npy").write_bytes(b"\x93NUMPY\x01\x00junk")
    (root / "truncated.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (root / "notes.txt").write_text("not an image, not a checkpoint")
    (root / "empty_dir").mkdir()
    (root / "not_a_run" / "checkpoints").mkdir(parents=True)
    (root / "corrupt_results" / "a").mkdir(parents=True)
    (root / "corrupt_results" / "a" / "results.json").write_text('{"test/elbo": ')
    paths = {p.stem if p.is_file() else p.name: str(p) for p in root.iterdir()}
    paths["missing"] = str(root / "missing.png")
    paths["nowhere"] = str(root / "nowhere")
    return paths


def truncated_copy(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(source.read_bytes()[:5000])
    return target


def snapshot(root: Path) -> dict[str, str]:
    """Every folder and file below root, files with their content's hash: equal snapshots, nothing written."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            found[os.path.relpath(os.path.join(folder, name), root)] = "dir"
        for name in files:
            path = os.path.join(folder, name)
            found[os.path.relpath(path, root)] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return found


def fails_in_one_line(call: Callable[[], object], capsys, tool: str) -> str:
    """The call ends with exit status 2 and one line on stderr, ``<tool>: error: ...``; returns that line."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        call()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert stopped.value.code == 2, err
    assert len(lines) == 1 and lines[0].startswith(f"{tool}: error: "), err
    return lines[0]


def fill(args: list[str], inputs: dict[str, str], run: Path) -> list[str]:
    return [arg.format(run=run, **inputs) for arg in args]


RUN_ARGUMENTS = [  # the run argument of classify, generate and evaluate
    (["{nowhere}"], "nowhere is not a run directory, a checkpoint, an exported folder, a pretrained model"),
    (["{empty_dir}"], "no checkpoint in"),
    (["{not_a_run}"], "no checkpoint in"),
    (["{notes}"], "notes.txt is not a readable checkpoint"),
]

CLASSIFY = [
    (["--samples", "-3"], "argument --samples: must be a positive integer, got '-3'"),
    (["--samples", "0"], "argument --samples: must be a positive integer, got '0'"),
    (["--samples", "abc"], "argument --samples: must be a positive integer, got 'abc'"),
    (["--samples", "2.5"], "argument --samples: must be a positive integer, got '2.5'"),
    (["--seed", "-1"], "argument --seed: must be an integer in [0, 4294967295], got '-1'"),
    (["--seed", "abc"], "argument --seed"),
    (["--split", "nope"], "argument --split: invalid choice: 'nope'"),
    (["--split", "unseen"], "no 'unseen' split"),
    (["--method", "foo"], "method 'foo': cvae1 classifies with method 'elbo' or 'iwae'"),
    (["--method", "iwae", "--samples", "0"], "argument --samples: must be a positive integer, got '0'"),
    (["--reject", "-0.1"], "argument --reject: must be a rate in [0, 1), got '-0.1'"),
    (["--reject", "1"], "argument --reject: must be a rate in [0, 1), got '1'"),
    (["--reject", "nan"], "argument --reject: must be a rate in [0, 1), got 'nan'"),
    (["--reject", "0.05", "--reject-score", "maybe"], "argument --reject-score: invalid choice: 'maybe'"),
    (["--reject-score", "max_prob"], "--reject-score needs --reject RATE"),
    (["--images"], "argument --images: expected at least one argument"),
    (["--images", "{nan}"], "nan.npy[1]: 1 non-finite pixel value (NaN or inf); float pixels must be finite"),
    (["--images", "{inf}"], "inf.npy[1]: 1 non-finite pixel value (NaN or inf)"),
    (["--images", "{above_one}"], "above_one.npy[1]: 1 pixel value outside [0, 1]"),
    (["--images", "{negative}"], "negative.npy[0]: 784 pixel values outside [0, 1]; float pixels must be finite and "
                                 "lie in [0, 1] (or store uint8 0..255) (and 2 more images)"),
    (["--images", "{empty}"], "empty.npy holds no images"),
    (["--images", "{wrong_shape}"], "wrong_shape.npy: expected images of shape"),
    (["--images", "{strings}"], "strings.npy: expected images of shape"),
    (["--images", "{corrupt}"], "corrupt.npy is not a readable .npy file"),
    (["--images", "{truncated}"], "truncated.png is not a readable image"),
    (["--images", "{notes}"], "notes.txt: not an image"),
    (["--images", "{empty_dir}"], "empty_dir holds no image files"),
    (["--images", "{missing}"], "missing.png not found"),
    (["data=nonsense"], "override data=nonsense: In 'config': Could not find 'data/nonsense'; Available options in "
                         "'data': celeba, cifar10, digits"),
    (["foo"], "override foo: Error parsing override 'foo'; missing EQUAL at '<EOF>'"),
    (["data.nope=3"], "override data.nope=3: Could not override 'data.nope'.; "
                      "To append to your config use +data.nope=3"),
    (["data.batch_size=abc"], "data.batch_size must be an integer, got 'abc'"),
    (["data.split=[64,32]"], "data.split must be three"),
    (["--out", "{notes}"], "argument --out: {notes} exists and is not a directory"),
]

GENERATE = [
    (["--temperature", "-1"], "argument --temperature: must be a positive number, got '-1'"),
    (["--temperature", "0"], "argument --temperature: must be a positive number, got '0'"),
    (["--temperature", "nan"], "argument --temperature: must be a positive number, got 'nan'"),
    (["--temperature", "inf"], "argument --temperature: must be a positive number, got 'inf'"),
    (["--temperature", "warm"], "argument --temperature: must be a positive number, got 'warm'"),
    (["-n", "0"], "argument -n: must be a positive integer, got '0'"),
    (["-n", "-2"], "argument -n: must be a positive integer, got '-2'"),
    (["--n-examples", "-1"], "argument --n-examples: must be an integer >= 0, got '-1'"),
    (["--n-examples", "many"], "argument --n-examples: must be an integer >= 0, got 'many'"),
    (["--labels", "12"], "--labels must lie in [0, 10), got [12]"),
    (["--labels", "-1"], "--labels must lie in [0, 10), got [-1]"),
    (["--labels", "three"], "argument --labels: must be an integer, got 'three'"),
    (["--labels"], "argument --labels: expected at least one argument"),
    (["--attributes", "shape=circle"], "--attributes does not apply"),
    (["--attributes"], "argument --attributes: expected at least one argument"),
    (["--split", "unseen"], "no 'unseen' split"),
    (["--seed", "x"], "argument --seed"),
    (["--out", "{notes}"], "argument --out: {notes} exists and is not a directory"),
]

EVALUATE = [
    (["--iwae-samples", "0"], "argument --iwae-samples: must be a positive integer, got '0'"),
    (["--iwae-samples", "-1"], "argument --iwae-samples: must be a positive integer, got '-1'"),
    (["--n-per-class", "0"], "argument --n-per-class: must be a positive integer, got '0'"),
    (["--n-per-class", "-5"], "argument --n-per-class: must be a positive integer, got '-5'"),
    (["--n-completions", "1"], "argument --n-completions: must be an integer >= 2, got '1'"),
    (["--reference", "{nowhere}"], "nowhere is not a run directory, a checkpoint"),
    (["--reference", "{empty_dir}"], "no checkpoint in"),
    (["--reference", "{notes}"], "notes.txt is not a readable checkpoint"),
    (["--reference", "{run}"], "holds a cvae1 model, not a reference classifier"),
    (["--split", "unseen"], "no 'unseen' split"),
    (["--out", "{notes}"], "argument --out: {notes} exists and is not a directory"),
]

TOOLS = {"cvaezoo-classify": classify_main, "cvaezoo-generate": generate_main, "cvaezoo-evaluate": evaluate_main}
CASES = [(tool, args, message) for tool, table in (("cvaezoo-classify", CLASSIFY), ("cvaezoo-generate", GENERATE),
                                                   ("cvaezoo-evaluate", EVALUATE)) for args, message in table]


@pytest.mark.parametrize("tool, args, message", CASES, ids=[f"{t[8:]} {' '.join(a)}" for t, a, _ in CASES])
def test_a_bad_option_or_input_of_a_model_tool_is_one_line_and_writes_nothing(run, inputs, capsys, tool, args, message):
    before = snapshot(run.parent)
    line = fails_in_one_line(lambda: TOOLS[tool]([str(run), *fill(args, inputs, run)]), capsys, tool)
    assert message.format(run=run, **inputs) in line
    assert snapshot(run.parent) == before  # no output folder in the run, nothing changed


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("args, message", RUN_ARGUMENTS, ids=[a[0] for a, _ in RUN_ARGUMENTS])
def test_a_run_argument_that_is_not_a_run_is_one_line(inputs, tmp_path, capsys, tool, args, message):
    line = fails_in_one_line(lambda: TOOLS[tool](fill(args, inputs, tmp_path)), capsys, tool)
    assert message in line


def test_a_truncated_checkpoint_given_to_a_tool_is_one_line(run, tmp_path, capsys):
    broken = truncated_copy(run / "checkpoints" / "best.ckpt", tmp_path / "broken.ckpt")
    for tool, main in TOOLS.items():
        line = fails_in_one_line(lambda: main([str(broken)]), capsys, tool)  # noqa: B023 (called at once)
        assert "broken.ckpt is not a readable checkpoint" in line
    out = tmp_path / "e"
    reference = lambda: evaluate_main([str(run), "--reference", str(broken), "--out", str(out)])  # noqa: E731
    assert "broken.ckpt is not a readable checkpoint" in fails_in_one_line(reference, capsys, "cvaezoo-evaluate")
    assert not (tmp_path / "e").exists()


COLLECT = [
    (["{nowhere}"], "{nowhere} is not a directory"),
    (["{notes}"], "{notes} is not a directory"),
    (["{empty_dir}"], "no results.json found below {empty_dir}"),
    (["{corrupt_results}"], "results.json is not readable JSON"),
    (["{run}", "--metrics", "test/elbo", "nope"], "--metrics: no run has ['nope']; they have"),
    (["{run}", "--include", "nothing.json"], "--include nothing.json: no run has this file"),
    (["{run}", "--out", "{notes}"], "argument --out: {notes} exists and is not a directory"),
    (["{run}", "--bogus"], "unrecognized arguments: --bogus"),
]


@pytest.mark.parametrize("args, message", COLLECT, ids=[" ".join(a) for a, _ in COLLECT])
def test_a_bad_option_or_input_of_collect_is_one_line_and_writes_nothing(run, inputs, capsys, args, message):
    before = snapshot(run.parent)
    line = fails_in_one_line(lambda: collect_main(fill(args, inputs, run)), capsys, "cvaezoo-collect")
    assert message.format(run=run, **inputs) in line
    assert snapshot(run.parent) == before


TRAIN_VALUES = [
    (["seed=abc"], "seed must be an integer in [0, 4294967295], got 'abc'"),
    (["seed=-1"], "seed must be an integer in [0, 4294967295], got -1"),
    (["seed=1.5"], "seed must be an integer in [0, 4294967295], got 1.5"),
    (["skip_if_done=maybe"], "skip_if_done must be true or false, got 'maybe'"),
    (["n_samples_per_class=-1"], "n_samples_per_class must be an integer >= 0, got -1"),
    (["n_samples_per_class=abc"], "n_samples_per_class must be an integer >= 0, got 'abc'"),
    (["trainer.max_epochs=abc"], "trainer.max_epochs must be an integer or null, got 'abc'"),
    (["data.batch_size=abc"], "data.batch_size must be an integer, got 'abc'"),
    (["model.latent_dim=abc"], "model.latent_dim must be an integer, got 'abc'"),
    (["model.lr=fast"], "model.lr must be a number, got 'fast'"),
    (["model.beta=[1]"], "model.beta must be a number, got [1]"),
    (["net.hidden=abc"], "net.hidden must be a list of integers, got 'abc'"),
    (["net.hidden=[64,x]"], "net.hidden must be a list of integers, got [64, 'x']"),
    (["+net.condition_as_channels=perhaps"], "net.condition_as_channels must be true or false, got 'perhaps'"),
    (["ckpt_path={nowhere}"], "ckpt_path={nowhere}: checkpoint {nowhere} does not exist"),
    (["ckpt_path={notes}"], "ckpt_path={notes}: {notes} is not a readable checkpoint"),
]


@pytest.mark.parametrize("args, message", TRAIN_VALUES, ids=[" ".join(a) for a, _ in TRAIN_VALUES])
def test_a_config_value_of_the_wrong_type_ends_training_in_one_line_naming_the_key(inputs, tmp_path, capsys, args,
                                                                                   message):
    argv = [*TRAIN, *fill(args, inputs, tmp_path), f"hydra.run.dir={tmp_path / 'r'}"]
    call = lambda: hydra_main(train_main, argv)  # noqa: E731
    line = fails_in_one_line(call, capsys, "cvaezoo-train")
    assert message.format(**inputs) in line
    assert not (tmp_path / "r").exists()  # no run directory left behind with the record of a run that never was
    # nor a log handler still pointing into it: a later record in this process would try to reopen its file
    assert not [h for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
                for h in getattr(logger, "handlers", []) if isinstance(h, logging.FileHandler)
                and str(tmp_path / "r") in h.baseFilename]


def test_the_reference_tool_reports_a_bad_value_in_one_line(tmp_path, capsys):
    call = lambda: hydra_main(reference_main, [*TRAIN, "seed=abc", f"hydra.run.dir={tmp_path / 'r'}"])  # noqa: E731
    assert "seed must be an integer" in fails_in_one_line(call, capsys, "cvaezoo-reference")


@pytest.mark.parametrize("damage", ["truncate", "empty"])
def test_resuming_from_a_damaged_last_checkpoint_is_one_line_and_loses_nothing(run, tmp_path, capsys, damage):
    """cvaezoo-train hydra.run.dir=<run> ckpt_path=last after last.ckpt was cut short (a full disk, a killed copy):
    the error names the file; the checkpoints, metrics, results and the record of how the run was trained
    (.hydra/, which Hydra rewrites before the job starts) stay as they were."""
    copy = shutil.copytree(run, tmp_path / "run")
    last = copy / "checkpoints" / "last.ckpt"
    if damage == "truncate":
        truncated_copy(run / "checkpoints" / "last.ckpt", last)
    else:
        last.write_bytes(b"")
    kept = {k: v for k, v in snapshot(copy).items() if k != "train.log"}  # Hydra's log of the attempt may grow
    call = lambda: hydra_main(train_main, [f"hydra.run.dir={copy}", "ckpt_path=last", *QUIET])  # noqa: E731
    line = fails_in_one_line(call, capsys, "cvaezoo-train")
    assert f"ckpt_path=last: {last} is not a readable checkpoint (truncated or corrupt?)" in line
    assert {k: v for k, v in snapshot(copy).items() if k != "train.log"} == kept  # .hydra: still the run's record


CONFIG = Path(__file__).resolve().parents[1] / "cvaezoo" / "conf"
SHIPPED = [[f"experiment={p.stem}"] for p in sorted((CONFIG / "experiment").glob("*.yaml"))] + [
    [f"{group}={p.stem}"] for group in ("model", "net", "data", "trainer", "logger")
    for p in sorted((CONFIG / group).glob("*.yaml"))] + [["hparams_search=optuna"], ["hydra/launcher=slurm"]]


@pytest.mark.parametrize("overrides", SHIPPED, ids=[" ".join(o) for o in SHIPPED])
def test_every_shipped_config_passes_the_type_check(overrides):
    """The type check reads annotations: every config the package ships (and the reference tool's) fits them."""
    check_config(compose_overrides(*overrides, "run_dir=."))
    check_config(compose_run_config([*overrides, "run_dir=."], config_name="reference"))


@pytest.mark.parametrize("value, hint, fits_it", [
    (3, int, True), (True, int, False), (3, float, True), ("3", float, False), (None, int | None, True),
    ([1, 2], Sequence[int], True), ((1, "a"), Sequence[int], False), ("a", Sequence[int], False),
    ("a", Sequence[str], None), ({"a": 1}, dict, True), ([1], dict | None, False), ("x", Path, None),
    ("bf16-mixed", Literal["32-true", "bf16-mixed"] | None, True), ("bf16", Literal["32-true"], False),
])
def test_what_a_config_value_must_be_is_read_from_annotations(value, hint, fits_it):
    assert fits(value, hint) is fits_it


def test_a_classifier_option_a_model_does_not_take_is_refused():
    """Named options, checked by the model: a sample count for a method that draws none, an unknown method and a
    count that is no positive integer are errors, not ignored."""
    from cvaezoo.errors import UserError
    from cvaezoo.models import MODELS

    cvae3 = MODELS["cvae3"](x_shape=(1, 4, 4), y_dim=3, net={"kind": "mlp", "hidden": [8]}, latent_dim=2)
    assert cvae3.classifier_mode("mc", 7) == ClassifierMode("mc", 7)
    assert cvae3.classifier_mode() == ClassifierMode("mc", 100) and cvae3.classifier_mode("mean") == ClassifierMode("mean", 0)
    with pytest.raises(UserError, match="samples=7 does not apply: cvae3's method 'mean' draws no samples"):
        cvae3.predict_proba(torch.zeros(2, 1, 4, 4), method="mean", samples=7)
    with pytest.raises(UserError, match="method 'elbo': cvae3 classifies with method 'mc' or 'mean'"):
        cvae3.classify(torch.zeros(2, 1, 4, 4), method="elbo")
    with pytest.raises(UserError, match="samples must be a positive integer, got 0"):
        cvae3.classifier_mode("mc", 0)
    baseline = MODELS["baseline"](x_shape=(1, 4, 4), y_dim=3, net={"kind": "mlp", "hidden": [8]})
    with pytest.raises(UserError, match="samples=2 does not apply: baseline's method 'exact' draws no samples"):
        baseline.predict_proba(torch.zeros(2, 1, 4, 4), samples=2)
    m2 = MODELS["m2"](x_shape=(1, 4, 4), y_dim=3, net={"kind": "mlp", "hidden": [8]}, latent_dim=2)
    with pytest.raises(UserError, match="method 'iwae': m2 classifies with method 'classifier'"):
        m2.predict_proba(torch.zeros(2, 1, 4, 4), method="iwae")
