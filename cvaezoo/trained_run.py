"""A trained run, resolved once: whatever the user passed (any name :func:`~cvaezoo.checkpoints.load_model` takes:
a run directory, a .ckpt file, an exported folder, a pretrained model, ``hf://org/name``; and Hydra overrides for
the data) -> the checkpoint or export, its run directory, the model, the run's data and its reference classifier.
Every tool (:mod:`cvaezoo.tools`, the command-line tools, the studies) works on one :class:`TrainedRun`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from cvaezoo.checkpoint_files import run_dir_of
from cvaezoo.checkpoints import load_model, resolve_source
from cvaezoo.data.base import TensorDataModule, binarize_fixed
from cvaezoo.data.images import load_inputs
from cvaezoo.errors import UserError
from cvaezoo.exported import is_export, read_export_config
from cvaezoo.models import ConditionalModel
from cvaezoo.runs import compose_config, data_overrides, load_data, merge_overrides, run_data_config, saved_overrides


@dataclass
class TrainedRun:
    """A trained model and what belongs to it; build one with :meth:`open`."""

    #: where the weights were read from: a checkpoint file, or an exported folder
    source: Path
    #: the training run directory (with Hydra's record), or None for a bare .ckpt file or an export
    run_dir: Path | None
    model: ConditionalModel
    #: Hydra overrides for the data, composed on top of those the run was trained with
    overrides: list[str] = field(default_factory=list)
    #: the overrides the run was trained with (its Hydra record's, or its export's); None: unknown (a bare .ckpt)
    training_overrides: list[str] | None = None
    #: what the user called it (the tools' default output folder for an export is named after it)
    name: str = ""
    _data: dict[tuple[str, ...], TensorDataModule] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, name: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainedRun:
        """The run ``name`` names (a run directory: its best checkpoint, else its last; a .ckpt file; an exported
        folder, a pretrained model or ``hf://org/name[@revision]``)."""
        source = resolve_source(name)
        if is_export(source):
            training = read_export_config(source)["training"].get("overrides", [])
            return cls(source, None, load_model(source), list(overrides), list(training), str(name))
        run_dir = run_dir_of(source)
        training = saved_overrides(run_dir) if run_dir is not None else None
        return cls(source, run_dir, load_model(source), list(overrides), training, str(name))

    def data(self, *extra: str) -> TensorDataModule:
        """The data the run was trained on, with the run's ``overrides`` and then ``extra`` ones, checked against
        the model's sizes (built once per set of overrides)."""
        if extra not in self._data:
            self._data[extra] = load_data(self.training_overrides or [], [*self.overrides, *extra],
                                          self.model.x_shape, self.model.y_dim, self.record())
        return self._data[extra]

    def data_config(self) -> DictConfig:
        """The run's data config with the overrides, composed but not built."""
        return run_data_config(self.training_overrides or [], self.overrides, self.record())

    def record(self) -> str:
        """The file the training overrides were read from (what an error in one names)."""
        if is_export(self.source):
            return str(self.source / "config.json")
        return str(self.run_dir / ".hydra" / "overrides.yaml") if self.run_dir is not None else "the run's record"

    def binarize(self) -> str:
        """How the run binarised its images (``data.binarize``); a bare .ckpt: "threshold" for a model of binary
        pixels, else "none"."""
        if self.training_overrides is not None:
            return self.data_config().get("binarize", "none")
        return "threshold" if self.model.pixel_levels == 2 else "none"

    def new_inputs(self, paths: list[str], seed: int = 0):
        """Image files, folders of them or .npy batches -> (names, x) preprocessed as the training data was:
        size and channels of x, then the run's binarisation (a threshold, or one Bernoulli draw seeded by
        ``seed``)."""
        names, x = load_inputs(paths, self.model.x_shape)
        return names, binarize_fixed(x, self.binarize(), seed)

    def reference_dir(self) -> Path | None:
        """Where ``cvaezoo-reference`` puts the reference classifier for this run's data (its ``hydra.run.dir``,
        ``runs/reference/<data>``, for the run's data choice and the overrides), in the folder the run was trained
        from (its Hydra record's working directory; the current one for a checkpoint without a record); None if
        no checkpoint is there. An export's is the exported reference beside it (``<its folder>/../reference``,
        as the pretrained models have theirs), if there is one."""
        if is_export(self.source):
            beside = self.source.parent / "reference"
            return beside if is_export(beside) else None
        saved = data_overrides(self.training_overrides or [], self.record())
        overrides = [item for item in merge_overrides(saved, self.overrides)
                     if item.split("=", 1)[0].lstrip("+~").split(".")[0] == "data"]
        cfg = compose_config([*overrides, "run_dir=."], config_name="reference", return_hydra_config=True)
        previous = HydraConfig.instance().cfg
        HydraConfig.instance().set_config(cfg)
        try:
            relative = Path(str(cfg.hydra.run.dir))
        finally:
            HydraConfig.instance().cfg = previous
        record = None if self.run_dir is None else self.run_dir / ".hydra" / "hydra.yaml"
        trained_from = Path(yaml.safe_load(record.read_text())["hydra"]["runtime"]["cwd"]) if record and \
            record.is_file() else Path.cwd()
        folder = trained_from / relative
        return folder if (folder / "checkpoints").is_dir() else None

    def output_dir(self, command: str, out: Path | None = None) -> Path:
        """The folder a tool writes into (``out``; default <run>/<command>, beside a bare .ckpt, or for an export
        ./<command>/<its name>, never inside the export), made now: call it once everything was computed, so that
        bad input writes nothing."""
        if out is None and is_export(self.source):
            out = Path(command) / (self.name.removeprefix("hf://").replace("/", "_").replace("@", "_") or "export")
        out = out or (self.run_dir or self.source.parent) / command
        if out.exists() and not out.is_dir():
            raise UserError(f"{out} exists and is not a directory: pass --out DIR")
        out.mkdir(parents=True, exist_ok=True)
        return out
