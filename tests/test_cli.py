"""The console script, as a user runs it: one epoch of each model on the embedded data."""

import csv
import json
import subprocess
import sys

import pytest
from conftest import MODEL_NAMES


@pytest.mark.slow
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_cvaezoo_train_one_epoch_writes_the_run_files(tmp_path, name):
    run_dir = tmp_path / name
    command = ["cvaezoo-train", f"model={name}", "trainer.max_epochs=1", f"hydra.run.dir={run_dir}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"run directory {run_dir}" in done.stdout
    assert (run_dir / "checkpoints" / "last.ckpt").exists() and (run_dir / "checkpoints" / "best.ckpt").exists()
    assert (run_dir / "samples.png").exists()
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    logged = {k for row in rows for k, v in row.items() if v != ""}
    assert {"train/elbo", "train/recon", "train/kl", "train/kl_weight", "val/elbo", "val/recon", "val/kl"} <= logged
    results = json.loads((run_dir / "results.json").read_text())
    assert results["model"] == name and results["test/elbo"] < 0


@pytest.mark.slow
def test_python_dash_m_entry_point_reports_bad_overrides(tmp_path):
    command = [sys.executable, "-m", "cvaezoo.train", "model=cvae9", f"hydra.run.dir={tmp_path}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "cvae9" in done.stderr and "cvae1" in done.stderr  # names the bad choice and the allowed ones
