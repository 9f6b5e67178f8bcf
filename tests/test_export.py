"""Exported models (cvaezoo-export): the round trip to the checkpoint, the model card, what a damaged export
says, loading by every kind of name, and checkpoints read without unpickling."""

from __future__ import annotations

import json
import pickle
import shutil
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import MODEL_NAMES, bare_export

from cvaezoo import checkpoints
from cvaezoo.checkpoint_files import CheckpointError
from cvaezoo.checkpoints import load_model, load_reference
from cvaezoo.cli import classify_main, evaluate_main, export_main, models_main
from cvaezoo.errors import UserError
from cvaezoo.export import export_reference, export_run
from cvaezoo.exported import EXPORT_FORMAT, load_export
from cvaezoo.inference import predict_proba
from cvaezoo.trained_run import TrainedRun


def export(run_dir: Path, out: Path, *options: str) -> Path:
    export_main([str(run_dir), str(out), "--iwae-samples", "5", *options])
    return out


@pytest.mark.parametrize("name", [pytest.param(name, marks=[] if name == "cvae1" else [pytest.mark.slow])
                                  for name in [*MODEL_NAMES, "baseline"]])
def test_an_export_gives_the_checkpoints_bounds_and_predictions_and_its_card_its_own_numbers(fitted, tmp_path, name):
    folder = export(fitted[name], tmp_path / "export")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "metrics.json",
                                                         "model.safetensors", "samples.png"]
    original, exported = load_model(fitted[name]), load_model(folder)
    assert type(exported) is type(original)
    x, y = TrainedRun.open(folder).data().split_tensors("test")
    x, y = x[:64], y[:64]
    torch.manual_seed(3)
    want = original.elbo_terms(x, y)
    torch.manual_seed(3)
    got = exported.elbo_terms(x, y)
    assert torch.equal(got.elbo, want.elbo) and torch.equal(got.kl, want.kl)
    torch.manual_seed(4)
    want_probs = predict_proba(original, x)
    torch.manual_seed(4)
    assert torch.equal(predict_proba(exported, x), want_probs)
    # the card: front matter the Hub reads, the model's bound, and the numbers of metrics.json
    card = (folder / "README.md").read_text()
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["library_name"] == "cvaezoo" and name in header["tags"] and header["datasets"] == ["mnist"]
    metrics = json.loads((folder / "metrics.json").read_text())
    assert f"| test/accuracy | {metrics['test/accuracy']:.4g} | {metrics['other_seed']['test/accuracy']:.4g} |" in card
    assert sys.modules[type(original).__module__].__doc__.splitlines()[0] in card  # what the model is
    # metrics.json states what the exported weights do: cvaezoo-evaluate with its seed gives its numbers
    settings = metrics["evaluation"]
    evaluate_main([str(folder), "--out", str(tmp_path / "again"), "--seed", str(settings["seed"]),
                   "--iwae-samples", str(settings["iwae_samples"])])
    again = json.loads((tmp_path / "again" / "evaluation.json").read_text())
    assert {key: again[key] for key in metrics if key.startswith("test/")} == \
        {key: value for key, value in metrics.items() if key.startswith("test/")}


def test_float16_weights_are_half_the_file_and_the_card_states_what_they_do(fitted, tmp_path):
    full = bare_export(fitted["cvae1"], tmp_path / "full")
    half = bare_export(fitted["cvae1"], tmp_path / "half", "float16")
    full_size, half_size = (full / "model.safetensors").stat().st_size, (half / "model.safetensors").stat().st_size
    assert half_size < 0.51 * full_size
    assert json.loads((half / "config.json").read_text())["weights_dtype"] == "float16"
    model = load_model(half)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # computes in float32
    weights = load_model(full).state_dict()
    assert any(not torch.equal(value, weights[key]) for key, value in model.state_dict().items())
    assert all(torch.allclose(value, weights[key], rtol=1e-3, atol=1e-4) for key, value in model.state_dict().items())


def test_a_damaged_export_is_one_line_naming_the_file(fitted, tmp_path, capsys):
    folder = bare_export(fitted["cvae2"], tmp_path / "export")
    cases = {}
    truncated = shutil.copytree(folder, tmp_path / "truncated")
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])
    cases["truncated"] = (truncated, "model.safetensors is not a readable safetensors file")
    other_size = shutil.copytree(folder, tmp_path / "other_size")
    config = json.loads((other_size / "config.json").read_text())
    config["hyper_parameters"]["latent_dim"] += 1
    (other_size / "config.json").write_text(json.dumps(config))
    cases["other_size"] = (other_size, "model.safetensors and config.json: checkpoint does not fit this cvae2")
    newer = shutil.copytree(folder, tmp_path / "newer")
    (newer / "config.json").write_text(json.dumps({**config, "format": EXPORT_FORMAT + 1}))
    cases["newer"] = (newer, f"has export format {EXPORT_FORMAT + 1}, written by a newer cvaezoo")
    no_weights = shutil.copytree(folder, tmp_path / "no_weights")
    (no_weights / "model.safetensors").unlink()
    cases["no_weights"] = (no_weights, "model.safetensors does not exist")
    not_json = shutil.copytree(folder, tmp_path / "not_json")
    (not_json / "config.json").write_text("{ half")
    cases["not_json"] = (not_json, "config.json is not a readable export config")
    unknown = shutil.copytree(folder, tmp_path / "unknown")
    (unknown / "config.json").write_text(json.dumps({**config, "model": "cvae9"}))
    cases["unknown"] = (unknown, "holds a 'cvae9' model, which this cvaezoo does not have")
    for case, (path, message) in cases.items():
        with pytest.raises(SystemExit) as exit_info:
            classify_main([str(path), "--images", str(folder / "samples.png")])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2, case
        assert message in err and str(path) in err and len(err.strip().splitlines()) == 1, (case, err)


def test_export_into_a_folder_that_holds_files_is_refused_and_a_failed_export_leaves_nothing(fitted, tmp_path, monkeypatch):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="exists and is not an empty folder"):
        export_run(TrainedRun.open(fitted["cvae4"]), taken)
    assert [p.name for p in taken.iterdir()] == ["notes.txt"]

    def broken(*args, **kwargs):
        raise RuntimeError("the evaluation failed")

    monkeypatch.setattr("cvaezoo.export.evaluation", broken)
    with pytest.raises(RuntimeError):
        export_run(TrainedRun.open(fitted["cvae4"]), tmp_path / "new", iwae_samples=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_every_kind_of_name_loads_the_same_model(fitted, tmp_path, monkeypatch, capsys):
    run_dir = fitted["cvae4"]
    folder = bare_export(run_dir, tmp_path / "mnist5k" / "cvae4")
    (folder / "metrics.json").write_text(json.dumps({"test/elbo": -100.0, "test/accuracy": 0.9}))
    monkeypatch.setattr(checkpoints, "PRETRAINED_DIR", tmp_path)
    x = torch.rand(6, 1, 28, 28).round()
    names = [run_dir, run_dir / "checkpoints" / "best.ckpt", folder, "mnist5k/cvae4"]
    outputs = []
    for name in names:
        torch.manual_seed(0)
        outputs.append(predict_proba(load_model(name), x))
    assert all(torch.equal(output, outputs[0]) for output in outputs)
    capsys.readouterr()
    models_main([])
    listed = capsys.readouterr().out
    assert listed.startswith("mnist5k/cvae4") and "CVAE-4" in listed and "accuracy" in listed
    monkeypatch.chdir(tmp_path)
    image = folder / "samples.png"
    classify_main(["mnist5k/cvae4", "--images", str(image)])  # writes beside the caller, not into the package
    assert (tmp_path / "classify" / "mnist5k_cvae4" / "predictions.csv").is_file()
    with pytest.raises(CheckpointError, match="pretrained: mnist5k/cvae4"):
        load_model("mnist5k/cvae9")


def test_loading_a_model_or_a_reference_leaves_the_random_stream_as_it_was(fitted, tmp_path):
    """So that a seed set before or after loading gives the same estimates (a card's numbers reproduce whether the
    tool finds the reference or is given it)."""
    folder = bare_export(fitted["cvae1"], tmp_path / "export")
    reference = tmp_path / "reference"
    export_main([str(fitted["reference"]), str(reference)])
    for load in (lambda: load_model(fitted["cvae1"]), lambda: load_model(folder), lambda: load_reference(reference)):
        torch.manual_seed(5)
        load()
        after = torch.rand(3)
        torch.manual_seed(5)
        assert torch.equal(torch.rand(3), after)


class RunsCode:
    """A pickle that would leave a file behind if it were unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "the pickle ran"))


def test_a_checkpoint_with_python_objects_is_refused_without_running_them(fitted, tmp_path):
    checkpoint = torch.load(fitted["cvae1"] / "checkpoints" / "best.ckpt", weights_only=True)
    marker = tmp_path / "ran.txt"
    checkpoint["hyper_parameters"]["surprise"] = RunsCode(marker)
    torch.save(checkpoint, tmp_path / "sent.ckpt", pickle_protocol=pickle.HIGHEST_PROTOCOL)
    with pytest.raises(CheckpointError, match="does not unpickle"):
        load_model(tmp_path / "sent.ckpt")
    assert not marker.exists()


def test_load_export_rebuilds_the_model_from_its_config_alone(fitted, tmp_path):
    folder = bare_export(fitted["cvae3"], tmp_path / "export")
    moved = shutil.copytree(folder, tmp_path / "elsewhere" / "copy")
    model = load_export(moved)
    assert model.model_name == "cvae3" and not model.training
    original = load_model(fitted["cvae3"]).state_dict()
    assert all(torch.equal(value, original[key]) for key, value in model.state_dict().items())


def test_saved_overrides_that_could_run_code_are_refused(fitted, tmp_path):
    """Hydra instantiates what a config names: overrides read from a file someone sent (an export's config.json, a
    run's record) may only choose shipped configs and set plain data values."""
    folder = bare_export(fitted["cvae1"], tmp_path / "export")
    marker = tmp_path / "ran.txt"
    config = json.loads((folder / "config.json").read_text())
    attacks = [["~data=mnist5k", "+data._target_=pathlib.Path.touch", f"+data.self={marker}"],
               ["data._target_=pathlib.Path.touch"], ["data.split={_target_:pathlib.Path.touch}"],
               ["data.root=${oc.env:HOME}"], ["data=../../etc"], ["+data.extra=1"], ["hydra.run.dir=x", "data=nope"],
               ["data=" + "../" * 30 + "proc/self/cwd/evil"], ["experiment=../data/mnist5k"], ["data=common/loader"],
               ["data=mnist", "data.mirrors=[http://127.0.0.1:9/beacon]"]]
    for overrides in attacks:
        (folder / "config.json").write_text(json.dumps({**config, "training": {**config["training"], "overrides": overrides}}))
        with pytest.raises(UserError) as error:
            TrainedRun.open(folder).data()
        assert "config.json" in str(error.value) and "\n" not in str(error.value), overrides
    assert not marker.exists()
    (folder / "config.json").write_text(json.dumps({**config, "training": {**config["training"], "overrides": [
        "model=cvae2", "~model.likelihood_kwargs", "trainer.max_epochs=3", "data.split=[4000,500,500]"]}}))
    assert len(TrainedRun.open(folder).data().split_tensors("test")[0]) == 500  # the others are fine, or not composed
    # the same rule for a reference classifier's run record, which cvaezoo-export composes
    reference = shutil.copytree(fitted["reference"], tmp_path / "reference")
    (reference / ".hydra").mkdir(exist_ok=True)
    (reference / ".hydra" / "overrides.yaml").write_text(
        f"- ~data=mnist5k\n- +data={{_target_:pathlib.Path.touch,self:{marker}}}\n")
    with pytest.raises(UserError, match="overrides.yaml"):
        export_reference(reference, tmp_path / "reference_export")
    assert not marker.exists()


def test_weights_of_another_dtype_or_not_finite_are_refused(fitted, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = bare_export(fitted["cvae2"], tmp_path / "export")
    weights = load_file(folder / "model.safetensors")
    first = next(key for key, value in weights.items() if value.is_floating_point())
    for name, changed in {"int": weights[first].to(torch.int32), "double": weights[first].double(),
                          "nan": torch.full_like(weights[first], float("nan"))}.items():
        save_file({**weights, first: changed}, folder / "model.safetensors")
        with pytest.raises(CheckpointError, match="model.safetensors"):
            load_model(folder)
    save_file(weights, folder / "model.safetensors")
    load_model(folder)
