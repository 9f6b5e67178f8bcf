"""Loggers that keep a resumed run's history: every logged row exactly once, none lost.

Lightning's CSVLogger deletes ``metrics.csv`` when it starts in a folder that has one, so a run resumed
with ``ckpt_path=last`` used to lose every row logged before the interruption. Here a resumed run keeps
the rows logged before its checkpoint's step (the rows after it are logged again by the resumed run),
TensorBoard purges the events after that step, and wandb continues the same run id.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment


class _KeepingWriter(ExperimentWriter):
    """Lightning's writer, except that rows logged before ``resume_step`` survive a restart in the same folder."""

    def __init__(self, log_dir: str, resume_step: int | None):
        self.resume_step = resume_step
        super().__init__(log_dir=log_dir)

    def _check_log_dir_exists(self) -> None:
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return  # a fresh run: nothing to keep or delete (Hydra's .hydra/ in the folder is no reason to warn)
        if self.resume_step is None:
            super()._check_log_dir_exists()  # a new run in an old run's folder: Lightning's warning and deletion
            return
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            header = list(reader.fieldnames or [])
            kept = [row for row in reader if row.get("step", "") != "" and int(float(row["step"])) < self.resume_step]
        tmp = path.with_name(path.name + ".tmp")  # written aside, then renamed: never half a history
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=header)
            writer.writeheader()
            writer.writerows(kept)
        os.replace(tmp, path)
        self.metrics_keys = sorted(header)  # new columns make save() rewrite the file with a wider header


class CSVLogger(LightningCSVLogger):
    """``metrics.csv`` in the run directory; with ``resume_step`` the earlier history is kept (see module doc)."""

    def __init__(self, *args: Any, resume_step: int | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.resume_step = resume_step

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingWriter(self.log_dir, self.resume_step)
        return self._experiment


WANDB_RUN_FOLDER = re.compile(r"^(?:offline-)?run-\d{8}_\d{6}-([0-9a-z]+)(?:-\d+)?$")  # "-1": a second start that second


def previous_wandb_run_id(wandb_dir: Path) -> str | None:
    """The id of the newest wandb run under ``wandb_dir`` (``[offline-]run-<time>-<id>[-n]`` folders), if any."""
    runs = [p for p in wandb_dir.glob("*run-*") if WANDB_RUN_FOLDER.match(p.name)] if wandb_dir.is_dir() else []
    newest = max(runs, key=lambda p: p.stat().st_mtime, default=None)
    return WANDB_RUN_FOLDER.match(newest.name).group(1) if newest else None


def resume_arguments(logger_class: type, save_dir: Path, resume_step: int | None) -> dict[str, Any]:
    """Constructor arguments that make a logger continue a resumed run's history instead of restarting it."""
    if resume_step is None:
        return {}
    if issubclass(logger_class, CSVLogger):
        return {"resume_step": resume_step}
    if issubclass(logger_class, TensorBoardLogger):
        return {"purge_step": resume_step}  # drops the events logged after the checkpoint
    if issubclass(logger_class, WandbLogger):
        run_id = previous_wandb_run_id(save_dir / "wandb")
        return {"id": run_id} if run_id else {}  # WandbLogger resumes a given id ("allow")
    return {}
