"""Scale-out: DDP on CPU (gloo), multirun + collect, Optuna, cluster launcher configs, loggers."""

import csv
import os
import subprocess

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from cvaezoo.checkpoints import load_model
from cvaezoo.collect import main as collect_main
from cvaezoo.runs import CONFIG_DIR
from cvaezoo.train import train

from conftest import SMALL_MNIST
from wandb_offline import config_keys, history_keys


def run(command, timeout=600, env=None):
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-4000:])
    return done


@pytest.mark.slow
def test_two_process_ddp_on_cpu_reduces_metrics_over_the_whole_validation_set(tmp_path):
    run_dir = tmp_path / "ddp"
    run(["cvaezoo-train", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", *SMALL_MNIST,
         "trainer.max_epochs=2", f"hydra.run.dir={run_dir}", "trainer.enable_progress_bar=false"])
    model = load_model(run_dir / "checkpoints" / "last.ckpt")
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 2 * 4  # 1000 examples, batch 128 per process, 2 processes
    with open(run_dir / "metrics.csv") as f:
        logged = [float(r["val/kl"]) for r in csv.DictReader(f) if r.get("val/kl")][-1]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[*SMALL_MNIST, "run_dir=."])
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    x, y = datamodule.splits["val"].tensors
    with torch.no_grad():  # the KL is closed form: deterministic given the final weights
        c = model.encode_condition(y)
        whole = float(model.posterior(x, c).kl(model.prior(x, c)).mean())
        halves = [float(model.posterior(x[i::2], c[i::2]).kl(model.prior(x[i::2], c[i::2])).mean()) for i in (0, 1)]
    assert logged == pytest.approx(whole, rel=1e-4)
    assert min(abs(h - whole) for h in halves) > 1e-3 * whole  # one rank's shard would have been visibly off
    assert (run_dir / "results.json").exists() and (run_dir / "samples.png").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_training_with_bf16_mixed_precision(compose_config):
    cfg = compose_config("trainer=gpu", "trainer.precision=bf16-mixed", *SMALL_MNIST, "trainer.max_epochs=1", "~logger")
    metrics = train(cfg)
    assert torch.isfinite(torch.tensor(metrics["test/elbo"]))


@pytest.mark.slow
def test_multirun_sweep_and_collect_give_mean_and_std_over_seeds(tmp_path):
    sweep = tmp_path / "sweep"
    run(["cvaezoo-train", "-m", "model=cvae1,cvae3", "seed=0,1", "data.split=[300,100,100]", "trainer.max_epochs=1",
         f"hydra.sweep.dir={sweep}", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"])
    collect_main([str(sweep), "--out", str(tmp_path / "table"), "--metrics", "test/elbo", "test/kl"])
    with open(tmp_path / "table" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted((r["model"], r["seed"]) for r in rows) == [("cvae1", "0"), ("cvae1", "1"), ("cvae3", "0"), ("cvae3", "1")]
    table = (tmp_path / "table" / "results.md").read_text().splitlines()
    assert table[0] == "| model | runs | test/elbo | test/kl |"
    cvae1 = [float(r["test/elbo"]) for r in rows if r["model"] == "cvae1"]
    mean = sum(cvae1) / 2
    assert table[2].startswith(f"| cvae1 | 2 | {mean:.4g} ± ")
    # rerunning the same sweep with skip_if_done runs nothing again
    stamps = {p: p.stat().st_mtime_ns for p in sweep.rglob("results.json")}
    run(["cvaezoo-train", "-m", "model=cvae1,cvae3", "seed=0,1", "data.split=[300,100,100]", "trainer.max_epochs=1",
         f"hydra.sweep.dir={sweep}", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
         "skip_if_done=true"])
    assert stamps == {p: p.stat().st_mtime_ns for p in sweep.rglob("results.json")}


@pytest.mark.slow
def test_optuna_search_runs_two_trials(tmp_path):
    sweep = tmp_path / "optuna"
    run(["cvaezoo-train", "-m", "hparams_search=optuna", "hydra.sweeper.n_trials=2", "data.split=[300,100,100]",
         "trainer.max_epochs=1", f"hydra.sweep.dir={sweep}", "trainer.enable_progress_bar=false",
         "trainer.enable_model_summary=false"])
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(results["best_params"]) == {"model.beta", "model.latent_dim", "model.lr"}
    assert results["best_value"] > 0  # a negative ELBO in nats
    assert len(list(sweep.rglob("results.json"))) == 2


@pytest.mark.parametrize("launcher, target", [("slurm", "SlurmLauncher"), ("local", "LocalLauncher")])
def test_cluster_launcher_configs_compose(launcher, target):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra/launcher={launcher}", "hydra.launcher.nodes=2", "trainer=ddp"],
                      return_hydra_config=True)
    job = cfg.hydra.launcher
    assert job._target_ == f"hydra_plugins.hydra_submitit_launcher.submitit_launcher.{target}"
    assert job.nodes == 2 and job.timeout_min > 0
    if launcher == "slurm":
        assert job.gpus_per_node == job.tasks_per_node == 4 and "partition" in job
    assert cfg.trainer.strategy == "ddp"


def test_wandb_offline_run_records_every_elbo_term_config_and_samples(compose_config, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    train(compose_config("logger=wandb", "data.split=[300,100,100]", "trainer.max_epochs=1", "logger.tags=[test]"))
    (run_file,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    keys = history_keys(run_file)
    for stage in ("train", "val", "test"):
        assert {f"{stage}/{t}" for t in ("elbo", "recon", "kl", "kl_weight", "loss")} <= keys
    assert any(k.startswith("samples/") for k in keys)
    assert "config" in config_keys(run_file)


def test_tensorboard_logger_writes_events(compose_config, tmp_path):
    train(compose_config("logger=tensorboard", "data.split=[300,100,100]", "trainer.max_epochs=1"))
    assert list((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))
