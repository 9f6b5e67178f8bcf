"""Adding a model is its file and its config, as CONTRIBUTING.md says: a copy of the package gets
``models/cvae5.py`` and ``conf/model/cvae5.yaml`` (tests/new_model/) and nothing else, and the tests every zoo
model runs through (shapes and gradients, the bound's inequalities, the config matrix, a short fit, classifier
mode, every tool, the import layers) run on it there."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import cvaezoo

TESTS = Path(__file__).resolve().parent
SUITES = ["test_models.py", "test_config.py", "test_training.py", "test_inference.py", "test_tools.py", "test_layers.py"]


@pytest.mark.slow
def test_a_model_added_as_a_file_and_a_config_runs_through_the_zoos_tests(tmp_path):
    package = tmp_path / "cvaezoo"
    shutil.copytree(Path(cvaezoo.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(TESTS / "new_model" / "cvae5.py", package / "models" / "cvae5.py")
    shutil.copy(TESTS / "new_model" / "cvae5.yaml", package / "conf" / "model" / "cvae5.yaml")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    found = subprocess.run([sys.executable, "-c", "import cvaezoo.models as m; print(m.MODELS['cvae5'].__module__, "
                            "m.CVAES, m.__file__)"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert found.returncode == 0, found.stderr[-2000:]
    assert found.stdout.split()[0] == "cvaezoo.models.cvae5" and str(tmp_path) in found.stdout  # the copy, registered
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "cvae5 or test_layers",
                           *[str(TESTS / suite) for suite in SUITES]],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-4000:]
    passed = int(re.search(r"(\d+) passed", done.stdout).group(1))
    assert passed >= 25, done.stdout[-2000:]  # every parametrized test of those files, for cvae5
