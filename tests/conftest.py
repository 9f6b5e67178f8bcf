"""Shared fixtures: Hydra config composition pointed at a temporary run directory, tiny data."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import DictConfig
from PIL import Image

from cvaezoo.data.idx import write_idx
from cvaezoo.models import CVAES, MODELS
from cvaezoo.runs import compose_config as compose_run_config

# Console scripts (cvaezoo-train, ...) run from subprocesses are this interpreter's, whether or not its
# virtualenv is activated.
os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")

MODEL_NAMES = list(CVAES)
#: registered models by what they declare: with a latent z (all but the baseline), generating x (images)
LATENT_MODELS = [name for name, cls in MODELS.items() if cls.has_latent]
IMAGE_MODELS = [name for name, cls in MODELS.items() if cls.target_name == "x"]
# A small, fast split of the embedded MNIST for tests that train.
SMALL_MNIST = ["data.split=[1000,200,200]"]


@pytest.fixture
def compose_config(tmp_path: Path) -> Callable[..., DictConfig]:
    """compose_config("model=cvae2", ...) -> the composed config, writing into tmp_path."""

    def _compose(*overrides: str) -> DictConfig:
        return compose_run_config([f"run_dir={tmp_path}", *QUIET, *overrides])

    return _compose


def write_fake_idx_dir(root: Path, n_train: int = 60, n_test: int = 20, size: int = 28, gz: bool = True) -> Path:
    """Four MNIST-named IDX files with random images and balanced labels."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for part, n in (("train", n_train), ("t10k", n_test)):
        write_idx(root / f"{part}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, size, size), dtype=np.uint8))
        write_idx(root / f"{part}-labels-idx1-ubyte{suffix}", (np.arange(n) % 10).astype(np.uint8))
    return root


def write_celeba_fixture(root: Path, n: int = 6, size: tuple[int, int] = (10, 8)) -> list[str]:
    """A CelebA-style folder: n coloured images, a three-attribute table and a partition file."""
    (root / "images").mkdir(parents=True)
    names = ["Male", "Smiling", "Eyeglasses"]
    lines = [str(n), " ".join(names)]
    for i in range(n):
        colour = (i * 40, 255 - i * 40, 100)
        Image.new("RGB", size, colour).save(root / "images" / f"{i:06d}.png")
        values = [1 if (i >> bit) & 1 else -1 for bit in range(3)]
        lines.append(f"{i:06d}.png " + " ".join(f"{v:2d}" for v in values))
    (root / "attrs.txt").write_text("\n".join(lines) + "\n")
    (root / "partition.txt").write_text("\n".join(f"{i:06d}.png {0 if i < 4 else (1 if i == 4 else 2)}" for i in range(n)))
    return names


def write_digit_folder(root: Path, digits: tuple[int, ...] = (0, 1, 7), per_class: int = 40) -> list[str]:
    """Real embedded MNIST digits as PNG files in class subfolders named after the digit ("zero", ...)."""
    from cvaezoo.data import MNIST5k

    images, labels = MNIST5k().load()
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    for digit in digits:
        (root / names[digit]).mkdir(parents=True, exist_ok=True)
        chosen = torch.nonzero(labels == digit).flatten()[:per_class]
        for i in chosen.tolist():
            Image.fromarray((images[i, 0] * 255).round().byte().numpy()).save(root / names[digit] / f"{i}.png")
    return sorted(names[d] for d in digits)


def write_cifar_archive(path: Path, per_batch: int = 20, n_test: int = 20) -> None:
    """A cifar-10-binary.tar.gz in the real layout, with random pixels and balanced labels."""
    import io
    import tarfile

    rng = np.random.default_rng(0)
    path.parent.mkdir(parents=True, exist_ok=True)

    def records(n: int) -> bytes:
        labels = (np.arange(n) % 10).astype(np.uint8)[:, None]
        return np.concatenate([labels, rng.integers(0, 256, (n, 3072), dtype=np.uint8)], axis=1).tobytes()

    members = {f"data_batch_{i}.bin": records(per_batch) for i in range(1, 6)}
    members["test_batch.bin"] = records(n_test)
    members["batches.meta.txt"] = "\n".join(["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                              "ship", "truck"]).encode() + b"\n\n"
    with tarfile.open(path, "w:gz") as archive:
        for name, body in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(body)
            archive.addfile(info, io.BytesIO(body))


@pytest.fixture
def idx_dir(tmp_path: Path) -> Path:
    return write_fake_idx_dir(tmp_path / "idx")


QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def compose_overrides(*overrides: str) -> DictConfig:
    """The composed training config (quiet trainer) with these overrides."""
    return compose_run_config([*QUIET, *overrides])


class FittedRuns(dict):
    """Run directory by model name, each model fitted on first use (25 epochs, 200 steps on 1 000 embedded
    digits) and then shared by every test of the session."""

    def __init__(self, factory: pytest.TempPathFactory):
        super().__init__()
        self.factory = factory

    def __missing__(self, name: str) -> Path:
        from cvaezoo.train import train

        run_dir = self.factory.mktemp(f"fitted_{name}")
        train(compose_overrides(f"model={name}", *SMALL_MNIST, "trainer.max_epochs=25", f"run_dir={run_dir}"))
        self[name] = run_dir
        return run_dir


def bare_export(run_dir: Path, out: Path, dtype: str = "float32") -> Path:
    """An exported folder with what loading needs (weights, config.json) and a sample image, without the card and
    metrics that cvaezoo-export measures (tests of loading need not wait for an evaluation)."""
    from cvaezoo.exported import write_export
    from cvaezoo.trained_run import TrainedRun
    from cvaezoo.viz import save_image_grid

    run = TrainedRun.open(run_dir)
    write_export(run.model, out, run.binarize(), {"overrides": run.training_overrides or []}, dtype)
    save_image_grid(torch.rand(1, 1, 1, 28, 28).round(), out / "samples.png")
    return out


@pytest.fixture(scope="session")
def fitted(tmp_path_factory) -> FittedRuns:
    """Run directories of the zoo's models (and any other registered model) after a short fit, made on demand."""
    return FittedRuns(tmp_path_factory)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``gpu`` skip cleanly on a machine without CUDA."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
