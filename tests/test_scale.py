"""Scale-out: DDP on CPU (gloo), multirun + collect, Optuna, cluster launcher configs, loggers."""

import csv
import math
import re
import subprocess
import sys
import time

import pytest
import torch
import yaml
from conftest import SMALL_MNIST
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from wandb_offline import config_keys, history_keys

from cvaezoo.checkpoints import load_model
from cvaezoo.collect import main as collect_main
from cvaezoo.runs import CONFIG_DIR, compose_config
from cvaezoo.train import train


def run(command, timeout=600, env=None):
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-4000:])
    return done


ODD_SPLIT = ["data.split=[1000,201,200]"]  # 201 validation examples: 101 on one process, 100 on the other


@pytest.mark.slow
def test_two_process_ddp_on_cpu_reduces_metrics_over_the_whole_validation_set(tmp_path):
    """Exact means with unequal per-process counts: no example padded in twice, none left out."""
    run_dir = tmp_path / "ddp"
    run(["cvaezoo-train", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", *ODD_SPLIT,
         "trainer.max_epochs=2", f"hydra.run.dir={run_dir}", "trainer.enable_progress_bar=false"])
    model = load_model(run_dir / "checkpoints" / "last.ckpt")
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 2 * 4  # 1000 examples, batch 128 per process, 2 processes
    with open(run_dir / "metrics.csv") as f:
        logged = [float(r["val/kl"]) for r in csv.DictReader(f) if r.get("val/kl")][-1]
    cfg = compose_config([*ODD_SPLIT, "run_dir=."])
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    x, y = datamodule.splits["val"].tensors
    assert len(x) == 201
    with torch.no_grad():  # the KL is closed form: deterministic given the final weights
        c = model.encode_condition(y)
        kl = model.posterior(x, c).kl(model.prior(x, c))
    whole = float(kl.mean())
    shards = [kl[0::2], kl[1::2]]  # what each process scores: 101 and 100 examples
    mean_of_means = float(sum(s.mean() for s in shards) / 2)  # a plain mean of per-process means is biased
    padded = float(torch.cat([kl, kl[:1]]).mean())  # the default sampler's padding re-scores example 0
    assert logged == pytest.approx(whole, rel=1e-5)
    assert abs(mean_of_means - whole) > 1e-5 * whole and abs(padded - whole) > 1e-5 * whole
    assert min(abs(float(s.mean()) - whole) for s in shards) > 1e-3 * whole  # one shard alone is visibly off
    assert (run_dir / "results.json").exists() and (run_dir / "samples.png").exists()


SKIP_ON_ONE_RANK = """
import lightning as L
import torch

from cvaezoo.data import MNIST5k
from cvaezoo.models import CVAE1


class NaNOnRankOne(CVAE1):
    def elbo_terms(self, x, y, samples=None, eps=None):
        terms = super().elbo_terms(x, y, samples, eps)
        if self.training and self.global_rank == 1 and self.global_step == 2:
            terms.recon = terms.recon * float("nan")
        return terms


if __name__ == "__main__":
    L.seed_everything(0)
    data = MNIST5k(split=(256, 64, 64), batch_size=32, binarize="dynamic")
    model = NaNOnRankOne(x_shape=(1, 28, 28), net={"hidden": [32]}, latent_dim=2, on_nonfinite="skip")
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=data)
    weights = sum(float(p.double().sum()) for p in model.parameters())
    print(f"rank {trainer.global_rank}: skipped {model.skipped_batches} steps {trainer.global_step} "
          f"weights {weights:.9g} next draw {torch.rand(1).item():.6f}", flush=True)
if torch.distributed.is_initialized():  # gloo's threads torn down before exit (else, rarely: "terminate called")
    torch.distributed.destroy_process_group()
"""


@pytest.mark.slow
def test_ddp_ranks_skip_a_nonfinite_step_together_and_draw_different_numbers(tmp_path):
    """A NaN on rank 1 alone: both ranks skip that step (no hang in the all-reduce) and go on; each rank has
    its own random stream (binarisation, noise), and a rerun draws the same numbers again."""
    script = tmp_path / "skip_on_one_rank.py"
    script.write_text(SKIP_ON_ONE_RANK)
    outputs = []
    for _ in range(2):
        done = run([sys.executable, str(script)], timeout=300)
        # searched, not read line by line: two processes share the pipes, so a rank's line can land after
        # another process's unfinished line (a CI run once saw one of the two lines that way)
        lines = sorted(re.findall(r"rank \d: skipped \d+ steps \d+ weights [-+.\de]+ next draw [-+.\de]+", done.stdout + done.stderr))
        assert len(lines) == 2, done.stdout[-2000:]
        outputs.append(lines)
    (rank0, rank1) = outputs[0]
    # 4 batches per rank; the skipped one still counts as a step, its update is dropped on both ranks
    assert "skipped 1 steps 4 " in rank0 and "skipped 1 steps 4 " in rank1, outputs[0]
    weights = rank0.split("weights ")[1].split()[0]
    assert math.isfinite(float(weights)) and f"weights {weights} " in rank1  # finite and still identical
    assert rank0.split("next draw")[1] != rank1.split("next draw")[1]  # the ranks' streams differ
    assert outputs[0] == outputs[1]  # and are reproducible


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_gpu_training_in_32_bit_and_bf16(compose_config, precision):
    """trainer=gpu: a finite bound and a model that learnt (skipped without CUDA by the conftest hook)."""
    cfg = compose_config("trainer=gpu", f"trainer.precision={precision}", *SMALL_MNIST, "trainer.max_epochs=2", "~logger")
    metrics = train(cfg)
    assert torch.isfinite(torch.tensor(metrics["test/elbo"])) and metrics["test/elbo"] > -300  # CPU: -228; untrained: about -545


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


@pytest.mark.slow
def test_wandb_offline_run_records_every_elbo_term_config_and_samples(compose_config, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    train(compose_config("logger=wandb", "data.split=[300,100,100]", "trainer.max_epochs=1", "logger.tags=[test]"))
    (run_file,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    wanted = {f"{stage}/{t}" for stage in ("train", "val", "test") for t in ("elbo", "recon", "kl", "kl_weight", "loss")}
    for _ in range(60):  # wandb's writer is another process: give it up to 30 s to flush (a CI run once read none)
        keys = history_keys(run_file)
        if wanted <= keys:
            break
        time.sleep(0.5)
    assert wanted <= keys, wanted - keys
    assert any(k.startswith("samples/") for k in keys)
    assert "config" in config_keys(run_file)


def test_tensorboard_logger_writes_events(compose_config, tmp_path):
    train(compose_config("logger=tensorboard", "data.split=[300,100,100]", "trainer.max_epochs=1"))
    assert list((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))


def test_resumed_runs_keep_their_logged_history_in_every_logger(compose_config, tmp_path, monkeypatch):
    """CSV rows before the checkpoint survive, TensorBoard purges what came after it, wandb continues the run id."""
    from lightning.pytorch.loggers import TensorBoardLogger

    from cvaezoo.loggers import WANDB_RUN_FOLDER, CSVLogger, resume_arguments

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    common = ["logger=wandb", "data.split=[300,100,100]"]
    train(compose_config(*common, "trainer.max_epochs=1"))
    train(compose_config(*common, "trainer.max_epochs=2", "ckpt_path=last"))
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    ids = {WANDB_RUN_FOLDER.match(run.name).group(1) for run in runs}
    assert len(runs) == 2 and len(ids) == 1, runs  # one wandb run, resumed (its folders may end in -1: same second)
    assert WANDB_RUN_FOLDER.match("offline-run-20261129_094852-8l8ji9ug-1").group(1) == "8l8ji9ug"
    assert resume_arguments(TensorBoardLogger, tmp_path, 8) == {"purge_step": 8}
    assert resume_arguments(CSVLogger, tmp_path, 8) == {"resume_step": 8} and resume_arguments(CSVLogger, tmp_path, None) == {}
