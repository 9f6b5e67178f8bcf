"""Bad input gets a specific error; interrupted or failing runs lose nothing; runs are repeatable."""

import csv
import gzip
import json
import math
import os
import re
import signal
import subprocess
import time

import lightning as L
import pytest
import torch
from conftest import SMALL_MNIST, write_fake_idx_dir
from hydra.errors import ConfigCompositionException

from cvaezoo.checkpoints import load_model
from cvaezoo.data.base import TensorDataModule
from cvaezoo.errors import UserError
from cvaezoo.models import CVAE1, MODELS
from cvaezoo.runs import build, build_callbacks
from cvaezoo.train import train

FAST = [*SMALL_MNIST, "~logger"]


def test_unknown_group_choice_names_the_allowed_values(compose_config):
    with pytest.raises(ConfigCompositionException, match=r"(?s)model/cvae9.*Available options.*cvae1"):
        compose_config("model=cvae9")


@pytest.mark.parametrize(
    "override, message",
    [("model.beta=-1", "model.beta must be >= 0, got -1"), ("model.latent_dim=0", "model.latent_dim must be > 0"),
     ("model.likelihood=poisson", "unknown likelihood 'poisson'"), ("net.kind=rnn", "net.kind must be one of"),
     ("data.binarize=maybe", "data.binarize must be one of"), ("data.split=[4000,500,800]", "asks for 5300"),
     ("model.on_nonfinite=pray", "model.on_nonfinite must be one of")],
)
def test_bad_config_values_name_the_key(compose_config, override, message):
    with pytest.raises(ValueError, match=message):
        train(compose_config(*FAST, override))


def test_labels_and_pixels_are_checked_at_the_model_boundary():
    model = CVAE1(x_shape=(1, 8, 8), net={"hidden": [16]}, latent_dim=2).eval()
    x = torch.rand(3, 1, 8, 8)
    with pytest.raises(ValueError, match=r"class labels must lie in \[0, 10\), got \[12\]"):
        model.sample(torch.tensor([1, 12]))
    with pytest.raises(ValueError, match=r"class labels must lie in \[0, 10\), got \[-1\]"):
        model.iwae_bound(x, torch.tensor([0, -1, 3]), samples=2)
    with pytest.raises(ValueError, match="x contains 64 non-finite values"):
        model.classify(torch.cat([x[:2], torch.full((1, 1, 8, 8), float("nan"))]))


class _Broken(TensorDataModule):
    def __init__(self, images, labels):
        super().__init__(split=(2, 1, 1))
        self._data = images, labels

    def load(self):
        return self._data


@pytest.mark.parametrize(
    "images, labels, message",
    [(torch.rand(8, 1, 4, 4), torch.tensor([0, 1] * 3 + [0, 10]), r"labels must lie in \[0, 10\), found \[10\]"),
     (torch.full((8, 1, 4, 4), float("inf")), torch.tensor([0, 1] * 4), "non-finite"),
     (torch.rand(8, 4, 4), torch.tensor([0, 1] * 4), r"shape \(N, C, H, W\)"),
     (2 * torch.rand(8, 1, 4, 4) + 1, torch.tensor([0, 1] * 4), r"must lie in \[0, 1\]")],
)
def test_bad_data_is_reported_when_the_data_module_is_set_up(images, labels, message):
    with pytest.raises(ValueError, match=message):
        _Broken(images, labels).setup()


def test_extreme_inputs_keep_the_bound_finite():
    model = MODELS["cvae1"](x_shape=(1, 8, 8), net={"hidden": [16]}, latent_dim=2, likelihood="gaussian")
    x = 1e4 * torch.randn(4, 1, 8, 8)
    terms = model.elbo_terms(x, torch.arange(4))
    assert torch.isfinite(terms.elbo).all()
    q = model.posterior(x, model.encode_condition(torch.arange(4)))
    assert q.logvar.abs().max() <= 12


def _inject_nan(model, at_steps):
    original = model.elbo_terms

    def elbo_terms(x, y, *args, **kwargs):
        terms = original(x, y, *args, **kwargs)
        if model.training and model.global_step in at_steps:
            terms.recon = terms.recon * float("nan")
        return terms

    model.elbo_terms = elbo_terms


def test_nonfinite_loss_stops_naming_step_and_term_and_keeps_the_last_good_checkpoint(compose_config, tmp_path):
    cfg = compose_config("model=cvae1", *FAST, "trainer.max_epochs=3")
    datamodule, model = build(cfg)
    _inject_nan(model, at_steps={10})  # epoch 1; the epoch-0 checkpoint (step 8) exists by then
    from hydra.utils import instantiate

    trainer = instantiate(cfg.trainer, callbacks=build_callbacks(cfg, model), logger=False)
    with pytest.raises(FloatingPointError, match=r"non-finite recon term at step 10 \(epoch 1\)"):
        trainer.fit(model, datamodule=datamodule)
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 8
    assert all(torch.isfinite(t).all() for t in last["state_dict"].values())


def test_nonfinite_loss_can_be_skipped_and_counted(compose_config):
    cfg = compose_config("model=cvae2", *FAST, "trainer.max_epochs=2", "model.on_nonfinite=skip")
    datamodule, model = build(cfg)
    _inject_nan(model, at_steps={3, 5})
    from hydra.utils import instantiate

    trainer = instantiate(cfg.trainer, enable_checkpointing=False, logger=False)
    trainer.fit(model, datamodule=datamodule)
    assert model.skipped_batches == 2
    assert trainer.callback_metrics["train/skipped_batches"] == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_same_seed_and_config_give_bit_identical_metrics(compose_config, tmp_path):
    results = []
    for attempt in ("a", "b"):
        cfg = compose_config("model=cvae4", *FAST, "trainer.max_epochs=2", f"run_dir={tmp_path / attempt}")
        train(cfg)
        result = json.loads((tmp_path / attempt / "results.json").read_text())
        result.pop("fit_seconds")  # wall time, the one field that may differ
        results.append(result)
    assert results[0] == results[1]


def test_resume_from_an_epoch_checkpoint_equals_an_uninterrupted_run(compose_config, tmp_path):
    common = ["model=cvae1", *FAST, "model.kl_warmup_steps=50"]
    straight = train(compose_config(*common, "trainer.max_epochs=4", f"run_dir={tmp_path / 'straight'}"))
    train(compose_config(*common, "trainer.max_epochs=2", f"run_dir={tmp_path / 'resumed'}"))
    first = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=False)
    assert first["global_step"] == 16 and "optimizer_states" in first
    resumed = train(compose_config(*common, "trainer.max_epochs=4", f"run_dir={tmp_path / 'resumed'}", "ckpt_path=last"))
    assert resumed == straight  # same weights, optimiser, warm-up and random state => same numbers


def test_skip_if_done_does_not_rerun(compose_config, tmp_path):
    cfg = compose_config("model=cvae2", *FAST, "+trainer.fast_dev_run=1")
    first = train(cfg)
    stamp = (tmp_path / "results.json").stat().st_mtime_ns
    again = train(compose_config("model=cvae2", *FAST, "+trainer.fast_dev_run=1", "skip_if_done=true"))
    assert (tmp_path / "results.json").stat().st_mtime_ns == stamp
    assert again["test/elbo"] == pytest.approx(first["test/elbo"])


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_killed_training_resumes_from_its_last_checkpoint(tmp_path, sig):
    run_dir = tmp_path / "run"
    command = ["cvaezoo-train", "model=cvae1", *SMALL_MNIST, "trainer.max_epochs=-1", "trainer.max_steps=400",
               "model.kl_warmup_steps=1000", "trainer.log_every_n_steps=1", f"hydra.run.dir={run_dir}",
               "trainer.enable_progress_bar=false"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    while not (run_dir / "checkpoints" / "last.ckpt").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    time.sleep(1.0)
    process.send_signal(sig)
    output, _ = process.communicate(timeout=120)
    assert process.returncode != 0, output[-2000:]
    assert "interrupted at step" in output
    interrupted = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    stopped_at = interrupted["global_step"]
    assert 0 < stopped_at < 400 and not (run_dir / "results.json").exists()

    done = subprocess.run([*command, "ckpt_path=last"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    final = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert final["global_step"] == 400
    import csv

    with open(run_dir / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train_step/loss")]
    steps = [int(r["step"]) for r in rows]
    resumed_steps = [s for s in steps if s >= stopped_at]
    assert resumed_steps and min(resumed_steps) >= stopped_at and max(steps) >= 390  # continued, not restarted
    weights = [float(r["train/kl_weight"]) for r in csv.DictReader(open(run_dir / "metrics.csv")) if r.get("train/kl_weight")]
    assert weights == sorted(weights) and math.isclose(weights[-1], 0.4, abs_tol=0.02)  # warm-up went on
    # the history survives the restart: every step's row and every epoch's validation row exactly once
    with open(run_dir / "metrics.csv") as f:
        history = list(csv.DictReader(f))
    logged_steps = [int(r["step"]) for r in history if r.get("train_step/loss")]
    assert logged_steps == list(range(400)), stopped_at
    validated = [int(r["epoch"]) for r in history if r.get("val/elbo")]
    assert validated == list(range(50)), (stopped_at, validated)  # 400 steps of 8 per epoch
    assert load_model(run_dir).model_name == "cvae1"


@pytest.mark.parametrize("overrides, message", [
    (["model.latent_dim=0"], "model.latent_dim must be > 0, got 0"),
    (["model.beta=-1"], "model.beta must be >= 0, got -1"),
    (["data.batch_size=0"], "data.batch_size and data.eval_batch_size must be > 0"),
    (["data.split=[5000,500,500]"], "data.split [5000, 500, 500] asks for 6000 examples but the dataset has 5000"),
    (["data=idx", "data.root=MISSING_DIR"], "missing IDX file t10k-images-idx3-ubyte[.gz] in MISSING_DIR"),
    (["data=idx", "data.root=CORRUPT_DIR"], "not an IDX file"),
])
def test_entry_point_reports_own_errors_in_one_line(tmp_path, monkeypatch, capsys, overrides, message):
    """cvaezoo-train with a bad value, missing or corrupt data: one line naming it, exit status 2, no traceback;
    HYDRA_FULL_ERROR=1 brings the traceback back."""
    from cvaezoo.train import main

    corrupt = write_fake_idx_dir(tmp_path / "corrupt")
    (corrupt / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x01\x02\x03\x04junk"))
    places = {"MISSING_DIR": str(tmp_path / "nowhere"), "CORRUPT_DIR": str(corrupt)}

    def fill(text: str) -> str:
        for name, path in places.items():
            text = text.replace(name, path)
        return text

    overrides, message = [fill(o) for o in overrides], fill(message)
    monkeypatch.setattr("sys.argv", ["cvaezoo-train", *overrides, f"hydra.run.dir={tmp_path / 'run'}", "~logger"])
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as stopped:
        main()
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [f"cvaezoo-train: error: {lines[0].split('error: ', 1)[1]}"] and message in lines[0], err
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(UserError, match=re.escape(message)):
        main()


class InterruptAt(L.Callback):
    """Interrupts training where a user's Ctrl-C (SIGINT) or a cluster's SIGTERM may land: after an optimiser
    step, or inside the validation that ends an epoch (before or after one of its batches, or after all)."""

    def __init__(self, step: int, hook: str = "on_train_batch_end", sig: int = signal.SIGTERM, times: int = 1):
        self.step, self.sig, self.times = step, sig, times
        self.fired = False
        setattr(self, hook, self._maybe_fire)  # Lightning calls each hook by name on the callback object

    def _maybe_fire(self, trainer: L.Trainer, *args) -> None:
        if trainer.global_step == self.step and not trainer.sanity_checking and not self.fired:
            self.fired = True
            for i in range(self.times):
                handler = signal.getsignal(self.sig)
                os.kill(os.getpid(), self.sig)
                # the kernel may deliver a signal to another thread and Python runs its handler later, between
                # bytecodes: wait until this one was handled (the handler was swapped) before sending the next
                deadline = time.monotonic() + 10
                while i < self.times - 1 and signal.getsignal(self.sig) is handler and time.monotonic() < deadline:
                    time.sleep(0.001)


@pytest.fixture(autouse=True)
def ctrl_c_raises_keyboard_interrupt():
    """Every test here starts as from a terminal, where Ctrl-C raises KeyboardInterrupt: a process started in the
    background (`pytest &`) inherits SIGINT ignored, and training then leaves it ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


class RecordCtrlCHandler(L.Callback):
    """Notes the SIGINT handler in force during every training step."""

    seen: list = []

    def on_train_batch_end(self, *args) -> None:
        RecordCtrlCHandler.seen.append(signal.getsignal(signal.SIGINT))


@pytest.mark.parametrize("handler", [signal.SIG_IGN, lambda signum, frame: None], ids=["ignored", "the-callers"])
def test_training_leaves_an_ignored_or_the_callers_ctrl_c_handler_alone(compose_config, handler):
    signal.signal(signal.SIGINT, handler)
    RecordCtrlCHandler.seen = []
    train(compose_config("model=cvae1", "data.split=[64,32,32]", "data.batch_size=32", "trainer.max_epochs=1",
                         f"+callbacks.record._target_={__name__}.RecordCtrlCHandler"))
    assert RecordCtrlCHandler.seen == [handler, handler] and signal.getsignal(signal.SIGINT) is handler
    signal.signal(signal.SIGINT, signal.default_int_handler)  # ... and Python's own is replaced while training
    RecordCtrlCHandler.seen = []
    train(compose_config("model=cvae1", "data.split=[64,32,32]", "data.batch_size=32", "trainer.max_epochs=1",
                         f"+callbacks.record._target_={__name__}.RecordCtrlCHandler"))
    assert len(RecordCtrlCHandler.seen) == 2 and all(h is not signal.default_int_handler for h in RecordCtrlCHandler.seen)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize("stop, hook, sig", [
    (5, "on_train_batch_end", signal.SIGTERM), (16, "on_train_batch_end", signal.SIGTERM),
    (5, "on_train_batch_end", signal.SIGINT), (16, "on_train_batch_end", signal.SIGINT),
    (16, "on_validation_batch_start", signal.SIGINT), (16, "on_validation_batch_end", signal.SIGINT),
    (16, "on_validation_batch_end", signal.SIGTERM), (16, "on_validation_end", signal.SIGINT),
], ids=["sigterm-mid-epoch", "sigterm-between-epochs", "sigint-mid-epoch", "sigint-between-epochs",
        "sigint-validation-batch-start", "sigint-validation-batch-end", "sigterm-validation",
        "sigint-validation-end"])
def test_interrupt_then_resume_logs_every_step_and_epoch_once(compose_config, tmp_path, stop, hook, sig):
    """At an epoch's end Lightning raises on SIGTERM after counting the epoch complete: resuming from there
    once skipped an epoch number; Ctrl-C inside the epoch-end validation once skipped that validation.
    Steps and validation epochs must each be logged exactly once, wherever the interrupt lands."""
    common = ["model=cvae1", "data.split=[256,64,64]", "data.batch_size=32", "trainer.max_epochs=-1",
              "trainer.max_steps=32", "trainer.log_every_n_steps=1"]  # 8 steps per epoch, 2 validation batches
    killer = [f"+callbacks.interrupt._target_={__name__}.InterruptAt", f"+callbacks.interrupt.step={stop}",
              f"+callbacks.interrupt.hook={hook}", f"+callbacks.interrupt.sig={int(sig)}"]
    with pytest.raises(SystemExit):
        train(compose_config(*common, *killer))
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == stop
    train(compose_config(*common, "ckpt_path=last"))
    with open(tmp_path / "metrics.csv") as f:
        history = list(csv.DictReader(f))
    assert [int(r["step"]) for r in history if r.get("train_step/loss")] == list(range(32))
    validated = [(int(r["epoch"]), int(r["step"])) for r in history if r.get("val/elbo")]
    assert validated == [(0, 7), (1, 15), (2, 23), (3, 31)]


def test_a_second_ctrl_c_quits_at_once_and_keeps_the_last_consistent_checkpoint(compose_config, tmp_path, capsys):
    common = ["model=cvae1", "data.split=[256,64,64]", "data.batch_size=32", "trainer.max_epochs=-1",
              "trainer.max_steps=32", "trainer.log_every_n_steps=1"]
    killer = [f"+callbacks.interrupt._target_={__name__}.InterruptAt", "+callbacks.interrupt.step=12",
              f"+callbacks.interrupt.sig={int(signal.SIGINT)}", "+callbacks.interrupt.times=2"]
    with pytest.raises(SystemExit):
        train(compose_config(*common, *killer))
    assert "quit at step 12 without saving" in capsys.readouterr().err
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 8  # epoch 0's
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C is the user's again
    train(compose_config(*common, "ckpt_path=last"))
    with open(tmp_path / "metrics.csv") as f:
        history = list(csv.DictReader(f))
    assert [int(r["step"]) for r in history if r.get("train_step/loss")] == list(range(32))
    assert [int(r["epoch"]) for r in history if r.get("val/elbo")] == [0, 1, 2, 3]
