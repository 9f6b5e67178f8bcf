"""The Lightning side of every model, pinned by values: what a tiny fit logs, the checkpoint and condition checks,
the non-finite policy and the per-process random streams (fast: 8x8 images, a few steps, no data module)."""

from __future__ import annotations

from types import SimpleNamespace

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from cvaezoo.errors import UserError
from cvaezoo.models import MODELS, training

SMALL_NET = {"kind": "mlp", "hidden": [16]}


def tiny(name: str = "cvae1", **kwargs):
    latent = {"latent_dim": 2} if MODELS[name].has_latent else {}  # the baseline has no z
    return MODELS[name](x_shape=(1, 4, 4), y_dim=3, net=SMALL_NET, **latent, **kwargs)


def data(n: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((n, 1, 4, 4), 0.4), generator=generator), torch.arange(n) % 3


def trainer(**kwargs) -> L.Trainer:
    return L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, **kwargs)


def test_validation_logs_the_mean_of_every_term_over_every_example():
    """Batches of 4, 4 and 2: each logged term is the mean over the 10 examples of the per-example term computed
    with the same noise, loss = recon + beta * KL, elbo = -(recon + KL), and the KL weight is beta."""
    model = tiny(beta=0.5)
    x, y = data()
    torch.manual_seed(3)
    loader = DataLoader(TensorDataset(x, y), batch_size=4, generator=torch.Generator())  # its own stream: the model's
    logged = trainer().validate(model, loader, verbose=False)[0]                             # noise alone uses seed 3
    torch.manual_seed(3)
    model.eval()
    with torch.no_grad():
        parts = [model.elbo_terms(x[i : i + 4], y[i : i + 4]) for i in (0, 4, 8)]
    recon, kl = torch.cat([p.recon for p in parts]), torch.cat([p.kl for p in parts])
    assert logged["val/recon"] == pytest.approx(float(recon.mean()), rel=1e-5)
    assert logged["val/kl"] == pytest.approx(float(kl.mean()), rel=1e-5)
    assert logged["val/elbo"] == pytest.approx(float(-(recon + kl).mean()), rel=1e-5)
    assert logged["val/loss"] == pytest.approx(float((recon + 0.5 * kl).mean()), rel=1e-5)
    assert logged["val/kl_weight"] == pytest.approx(0.5)
    assert "val/bpd" not in logged  # binary pixels: no bits per dimension
    assert model.metrics["val_terms"].update_count == 0 and not model.metrics["val_terms"].counts.any()  # reset for the next epoch


def test_training_logs_each_steps_terms_and_the_warmed_up_kl_weight_per_example():
    """Steps of 4, 4 and 2 examples with the KL weight warmed up over 4 steps (0, 0.25, 0.5): the epoch's
    weight is their mean over examples, 0.2; every step logs its batch means (log_every_n_steps=1)."""
    model = tiny(kl_warmup_steps=4)
    x, y = data()
    fit = trainer(max_epochs=1, log_every_n_steps=1)
    steps = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            steps.append({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train_step/")})

    fit.callbacks.append(Record())
    fit.fit(model, DataLoader(TensorDataset(x, y), batch_size=4))
    logged = fit.callback_metrics
    assert float(logged["train/kl_weight"]) == pytest.approx(0.2)
    assert [s["train_step/kl_weight"] for s in steps] == [0.0, 0.25, 0.5]
    for step in steps:
        assert step["train_step/loss"] == pytest.approx(step["train_step/recon"] + step["train_step/kl_weight"]
                                                        * step["train_step/kl"], rel=1e-5)
        assert step["train_step/elbo"] == pytest.approx(-(step["train_step/recon"] + step["train_step/kl"]), rel=1e-5)
    assert float(logged["train/kl"]) > 0 and float(logged["train/elbo"]) < 0
    assert "train/skipped_batches" not in logged and model.global_step == 3


def test_step_terms_are_logged_only_on_the_steps_lightning_writes():
    """log_every_n_steps=3 over 7 steps: Lightning writes step metrics after steps 2 and 5 (0-based), so the batch
    means are computed and logged there only, as step values; validation steps log none."""
    model = tiny()
    x, y = data(n=7)
    calls = []
    log_dict = model.log_dict

    def spy(values, **kwargs):
        calls.append((model.global_step, sorted(values), kwargs))
        return log_dict(values, **kwargs)

    model.log_dict = spy
    loader = DataLoader(TensorDataset(x, y), batch_size=1)
    trainer(max_epochs=1, log_every_n_steps=3).fit(model, loader, loader)
    names = sorted(f"train_step/{t}" for t in ("elbo", "recon", "kl", "loss", "kl_weight"))
    assert calls == [(step, names, {"on_step": True, "on_epoch": False}) for step in (2, 5)]


def test_the_gsnn_keeps_the_checkpoint_with_the_lowest_loss_the_cvae_and_hybrid_their_bound():
    assert tiny("cvae3").checkpoint_metric() == ("val/elbo", "max")
    assert tiny("cvae3", hybrid_alpha=0.0).checkpoint_metric() == ("val/loss", "min")  # the GSNN has no posterior
    assert tiny("cvae3", hybrid_alpha=0.5).checkpoint_metric() == ("val/elbo", "max")


def test_a_nonfinite_batch_is_skipped_counted_and_not_logged():
    """on_nonfinite=skip: the NaN batch's update is dropped, its terms are not accumulated, the count is logged."""
    model = tiny(on_nonfinite="skip")
    x, y = data()
    x[4:8] = float("nan")  # the second batch
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fit = trainer(max_epochs=1, log_every_n_steps=1)
    fit.fit(model, DataLoader(TensorDataset(x, y), batch_size=4))
    assert float(fit.callback_metrics["train/skipped_batches"]) == 1.0 and model.skipped_batches == 1
    assert torch.isfinite(fit.callback_metrics["train/elbo"])
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())
    assert any(not torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the good batches trained
    (optimizer,) = fit.optimizers
    assert {int(state["step"]) for state in optimizer.state.values()} == {2}  # batches 1 and 3 updated, 2 did not


def test_the_optimiser_takes_the_configured_learning_rate_and_weight_decay():
    (group,) = tiny(lr=0.02, weight_decay=0.003).configure_optimizers().param_groups
    assert (group["lr"], group["weight_decay"]) == (0.02, 0.003)


def test_a_nonfinite_batch_stops_training_by_default_naming_the_step_and_term():
    model = tiny()
    x, y = data()
    x[4:8] = float("nan")
    with pytest.raises(FloatingPointError, match=r"non-finite recon and kl term at step 1 \(epoch 0\); training "
                                                 r"stopped before updating the weights"):
        trainer(max_epochs=1).fit(model, DataLoader(TensorDataset(x, y), batch_size=4))


def fake_trainer(world_size: int = 1, rank: int = 0, decision=None) -> SimpleNamespace:
    strategy = SimpleNamespace(reduce_boolean_decision=decision)
    return SimpleNamespace(world_size=world_size, global_rank=rank, strategy=strategy, global_step=7,
                           current_epoch=2, is_global_zero=True, log_every_n_steps=50,
                           progress_bar_callback=None)


def test_every_process_reseeds_its_stream_from_the_common_one_plus_its_rank():
    draws = {}
    for rank in (0, 1):
        model = tiny()
        model._trainer = fake_trainer(world_size=2, rank=rank)
        torch.manual_seed(11)
        model.on_train_start()
        draws[rank] = torch.rand(3)
    torch.manual_seed(11)
    common = int(torch.randint(0, 2**31 - 1, (1,)))
    for rank in (0, 1):
        torch.manual_seed(common + rank)
        assert torch.equal(draws[rank], torch.rand(3))
    model = tiny()
    model._trainer = fake_trainer(world_size=1)
    torch.manual_seed(11)
    model.on_train_start()  # one process: its seeded stream is left alone
    assert torch.equal(torch.rand(3), torch.rand(3, generator=torch.Generator().manual_seed(11)))


def test_finiteness_is_decided_over_every_process():
    asked = []

    def decision(value, all):
        asked.append((value, all))
        return False  # another process saw a NaN

    model = tiny()
    assert model.all_finite(torch.ones(2)) and not model.all_finite(torch.tensor([1.0, float("inf")]))
    model._trainer = fake_trainer(world_size=2, decision=decision)
    assert not model.all_finite(torch.ones(2)) and asked == [(True, True)]
    model._trainer = fake_trainer(world_size=1, decision=decision)
    assert model.all_finite(torch.ones(2)) and len(asked) == 1  # one process: nothing to reduce


def test_the_nonfinite_policy_counts_or_raises_with_the_step():
    model = tiny(on_nonfinite="skip")
    model._trainer = fake_trainer()
    model._nonfinite("loss")
    model._nonfinite("loss")
    assert model.skipped_batches == 2
    strict = tiny()
    strict._trainer = fake_trainer()
    with pytest.raises(FloatingPointError, match=r"non-finite gradient at step 7 \(epoch 2\)"):
        strict._nonfinite("gradient")
    assert strict.skipped_batches == 0


def test_a_nonfinite_gradient_clears_every_gradient_when_skipping():
    model = tiny(on_nonfinite="skip")
    model._trainer = fake_trainer()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    next(model.parameters()).grad[0] = float("nan")
    model.on_before_optimizer_step(None)
    assert all(p.grad is None for p in model.parameters()) and model.skipped_batches == 1
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    model.on_before_optimizer_step(None)  # finite: kept
    assert all(p.grad is not None for p in model.parameters()) and model.skipped_batches == 1


def test_a_checkpoint_of_another_model_or_shape_is_refused_by_name():
    model = tiny()
    good = {"cvaezoo_model": "cvae1", "state_dict": model.state_dict()}
    model.on_load_checkpoint(good)  # fits: no error
    with pytest.raises(UserError, match="has no 'cvaezoo_model' entry"):
        model.on_load_checkpoint({"state_dict": model.state_dict()})
    with pytest.raises(UserError, match="checkpoint holds a cvae2 model, but a cvae1 model was configured"):
        model.on_load_checkpoint({**good, "cvaezoo_model": "cvae2"})
    state = dict(model.state_dict())
    key = next(iter(state))
    missing = {k: v for k, v in state.items() if k != key}
    with pytest.raises(UserError, match=rf"missing \['{key}'\], unexpected \[\]"):
        model.on_load_checkpoint({**good, "state_dict": missing})
    with pytest.raises(UserError, match=r"missing \[\], unexpected \['extra.weight'\]"):
        model.on_load_checkpoint({**good, "state_dict": {**state, "extra.weight": torch.zeros(1)}})
    other = MODELS["cvae1"](x_shape=(1, 4, 4), y_dim=3, net=SMALL_NET, latent_dim=3)
    with pytest.raises(UserError, match=r"has shape \(\d+(, \d+)*\) in the checkpoint but \(\d+(, \d+)*\) here"):
        model.on_load_checkpoint({**good, "state_dict": other.state_dict()})


def test_compile_compiles_each_network_once_and_not_the_metrics():
    model = tiny(compile=True)
    model.configure_model()
    compiled = {name for name, module in model.named_children() if module._compiled_call_impl is not None}
    assert compiled == {name for name, _ in model.named_children()} - {"metrics"}
    model.configure_model()  # a second call (a resumed fit) does not wrap them again
    assert model._compiled
    plain = tiny()
    plain.configure_model()
    assert all(module._compiled_call_impl is None for module in plain.children())


def test_class_labels_and_attribute_vectors_are_checked_outside_training():
    model = tiny().eval()
    assert model.encode_condition(torch.tensor([0, 2])).tolist() == [[1, 0, 0], [0, 0, 1]]
    with pytest.raises(UserError, match=r"class labels must lie in \[0, 3\), got \[3, -1\]"):
        model.encode_condition(torch.tensor([0, 3, -1, 2]))
    for labels, named in (([0, 3], r"\[3\]"), ([-1, 2], r"\[-1\]"), ([5, 6, 7, 8, 9, 10, 11], r"\[5, 6, 7, 8, 9\]")):
        with pytest.raises(UserError, match=r"class labels must lie in \[0, 3\), got " + named + "$"):
            model.encode_condition(torch.tensor(labels))  # one bound at a time; at most 5 named
    with pytest.raises(UserError, match=r"class labels must have shape \(B,\), got \(2, 1\)"):
        model.encode_condition(torch.tensor([[0], [1]]))
    model.train()  # training data was checked once, up front; one_hot itself still refuses a label >= y_dim
    assert model.encode_condition(torch.tensor([2])).tolist() == [[0, 0, 1]]
    multihot = MODELS["cvae1"](x_shape=(1, 4, 4), y_kind="multihot", y_dim=3, net=SMALL_NET, latent_dim=2).eval()
    assert multihot.encode_condition(torch.tensor([[1, 0, 1]])).dtype == torch.float32
    with pytest.raises(UserError, match=r"attribute vectors must have shape \(B, 3\), got \(1, 2\)"):
        multihot.encode_condition(torch.tensor([[1, 0]]))
    x = torch.zeros(2, 1, 4, 4)
    x[0, 0, 0, :2] = float("nan")
    with pytest.raises(UserError, match="x contains 2 non-finite values"):
        model.eval().check_x(x)
    with pytest.raises(UserError, match=r"x must have shape \(B, 1, 4, 4\), got \(2, 1, 4, 5\)"):
        model.check_x(torch.zeros(2, 1, 4, 5))
    model.train().check_x(x)  # during training the finiteness check is the loss's


def test_the_optimiser_is_fused_adam_where_torch_has_the_kernel(monkeypatch):
    """One kernel for every parameter (about 0.5 ms a step instead of 3-4 ms for the MLP nets on two cores); on a
    device without it, torch's per-tensor Adam, which steps (torch checks a fused optimiser's devices only then)."""
    assert tiny().configure_optimizers().defaults["fused"]
    monkeypatch.setattr(training, "_get_fused_kernels_supported_devices", list)  # a device without the kernel
    model = tiny(lr=0.02)
    optimizer = model.configure_optimizers()
    assert not optimizer.defaults["fused"] and optimizer.param_groups[0]["lr"] == 0.02
    x, y = data(4)
    model.training_loss(x, y, model.elbo_terms(x, y), 1.0).mean().backward()
    before = next(model.parameters()).detach().clone()
    optimizer.step()
    assert not torch.equal(before, next(model.parameters()))


def test_term_means_add_a_subset_of_the_terms_with_its_own_count():
    """A step that leaves a term out (CVAE-3 at hybrid_alpha=1, M2's unlabelled bound) counts only what it adds."""
    means = training.TermMeans(("a", "b", "c"))
    means.update(("a", "b", "c"), torch.tensor([2.0, 4.0, 6.0]), 2)
    means.update(("c",), torch.tensor([9.0]), 3)
    means.update(("b", "a"), torch.tensor([1.0, 5.0]), 1)
    assert {k: float(v) for k, v in means.compute().items()} == pytest.approx({"a": 7 / 3, "b": 5 / 3, "c": 15 / 5})
    partial = training.TermMeans(("never", "a"))
    partial.update(("a",), torch.ones(1), 1)
    assert list(partial.compute()) == ["a"]  # a term no step added has no mean


def test_a_nonfinite_term_with_finite_gradients_is_skipped_by_name():
    """The guard checks the step's terms themselves, not only the gradients (a logged term may not reach them)."""
    model = tiny(on_nonfinite="skip")
    model._trainer = fake_trainer()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    model.accumulate("train", ("elbo", "recon", "kl", "loss", "kl_weight", "gsnn_nll"),
                     torch.tensor([[1.0, 2.0]] * 5 + [[float("nan"), 0.0]]))
    model.on_before_optimizer_step(None)
    assert model.skipped_batches == 1 and all(p.grad is None for p in model.parameters())
    assert model.metrics["train_terms"].update_count == 0 and not model._pending_terms  # dropped, not logged
    strict = tiny()
    strict._trainer = fake_trainer()
    strict.accumulate("train", ("recon",), torch.tensor([[float("inf")]]))
    with pytest.raises(FloatingPointError, match=r"non-finite recon term at step 7"):
        strict.on_before_optimizer_step(None)


def test_a_step_nonfinite_on_another_process_is_skipped_here_too():
    model = tiny(on_nonfinite="skip")
    model._trainer = fake_trainer(world_size=2, decision=lambda value, all: False)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    model.accumulate("train", ("recon",), torch.ones(1, 4))
    model.on_before_optimizer_step(None)
    assert model.skipped_batches == 1 and all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("name", ["cvae3", "m2"])
def test_a_double_precision_fit_accumulates_every_term(name):
    """64-true: float64 terms (some steps leave one out) go into float32 epoch sums."""
    model = tiny(name)
    x, y = data()
    fit = trainer(max_epochs=1, precision="64-true")
    fit.fit(model, DataLoader(TensorDataset(x.double(), y), batch_size=4))
    assert torch.isfinite(fit.callback_metrics["train/elbo"])


def test_the_optimiser_is_not_fused_under_a_gradient_scaler():
    """16-mixed: Lightning leaves unscaling to a fused optimiser, which refuses clipping and skipped steps."""
    model = tiny()
    model._trainer = SimpleNamespace(precision_plugin=SimpleNamespace(scaler=object()))
    assert not model.configure_optimizers().defaults["fused"]
    model._trainer = SimpleNamespace(precision_plugin=SimpleNamespace(scaler=None))
    assert model.configure_optimizers().defaults["fused"]


def test_a_checkpoint_whose_likelihood_changed_meaning_is_refused_and_new_ones_carry_their_format(tmp_path):
    """A discretised logistic saved before #27 (no format entry: its log-scale was a tanh into [-6, 4]) is refused
    with the reason; a Bernoulli model of that format still loads; a format from a newer cvaezoo is refused; a
    checkpoint saved now records the current format and loads."""
    from cvaezoo.checkpoint_files import CHECKPOINT_FORMAT

    logistic = MODELS["cvae1"](x_shape=(1, 4, 4), y_dim=3, net=SMALL_NET, latent_dim=2, pixel_levels=256)
    assert logistic.likelihood_name == "discretized_logistic"
    old = {"cvaezoo_model": "cvae1", "state_dict": logistic.state_dict()}
    with pytest.raises(UserError, match=r"format 1 predates .*log-scale is clamped to \[-9, 7\].*retrain"):
        logistic.on_load_checkpoint(old)
    logistic.on_load_checkpoint({**old, "cvaezoo_format": CHECKPOINT_FORMAT})
    with pytest.raises(UserError, match=f"format {CHECKPOINT_FORMAT + 1} was written by a newer cvaezoo"):
        logistic.on_load_checkpoint({**old, "cvaezoo_format": CHECKPOINT_FORMAT + 1})
    bernoulli = tiny()
    bernoulli.on_load_checkpoint({"cvaezoo_model": "cvae1", "state_dict": bernoulli.state_dict()})  # unchanged: loads
    saved: dict = {}
    logistic.on_save_checkpoint(saved)
    assert saved["cvaezoo_format"] == CHECKPOINT_FORMAT


def test_every_checkpoint_format_states_its_change_and_a_refusal_names_each_change_skipped(monkeypatch):
    """A format bump without its reason in FORMAT_CHANGES would make the refusal a KeyError; a checkpoint two formats
    old is told both changes, oldest first."""
    from cvaezoo import checkpoint_files
    from cvaezoo.checkpoint_files import CHECKPOINT_FORMAT, FORMAT_CHANGES, check_checkpoint_format

    assert sorted(FORMAT_CHANGES) == list(range(2, CHECKPOINT_FORMAT + 1))
    monkeypatch.setattr(checkpoint_files, "CHECKPOINT_FORMAT", 3)
    monkeypatch.setitem(FORMAT_CHANGES, 3, "the third change")
    with pytest.raises(UserError, match=r"format 1 predates .*format 2: the discretised logistic.*; format 3: the third change\)"):
        check_checkpoint_format({}, oldest_readable=3)
    check_checkpoint_format({"cvaezoo_format": 3}, oldest_readable=3)
