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
REQUIRED = [  # what every zoo model runs through, by test id
    "test_models.py::test_forward_backward_shapes_and_finite_loss_and_every_network_learns[cvae5]",
    "test_models.py::test_elbo_below_iwae_below_exact_log_likelihood[cvae5]",
    "test_config.py::test_every_registered_model_is_trained_by_the_config_of_its_name[cvae5]",
    "test_config.py::test_every_combination_runs_fast_dev_run[cvae5-mlp-mnist5k]",
    "test_training.py::test_short_fit_lowers_validation_negative_elbo[cvae5]",
    "test_inference.py::test_classifier_accuracy_far_above_chance_after_short_fit[cvae5]",
    "test_inference.py::test_iwae_is_not_below_the_elbo_on_average[cvae5]",
    "test_tools.py::test_every_tool_runs_on_the_model_and_the_command_line_writes_what_the_library_returns[cvae5]",
]
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
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "-k", "cvae5 or test_layers",
                           *[str(TESTS / suite) for suite in SUITES]],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-4000:]
    passed = set(re.findall(r"^PASSED (\S+)", done.stdout, re.MULTILINE))
    missing = set(REQUIRED) - {test.split("tests/", 1)[-1] for test in passed}
    assert not missing, (missing, done.stdout[-3000:])  # none may drop out (e.g. by declaring zoo = False)
    assert len(passed) >= 29, done.stdout[-2000:]
