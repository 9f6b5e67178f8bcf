"""hf://org/name models through huggingface_hub, against a stand-in for the Hub on 127.0.0.1 (tests/hub_server.py):
download, the cache with the server stopped and offline, revisions, and the one-line errors. No network."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("huggingface_hub")
from conftest import bare_export  # noqa: E402
from hub_server import HubServer  # noqa: E402
from huggingface_hub import constants  # noqa: E402

from cvaezoo.checkpoint_files import CheckpointError  # noqa: E402
from cvaezoo.checkpoints import load_model  # noqa: E402
from cvaezoo.cli import push_main  # noqa: E402
from cvaezoo.errors import UserError  # noqa: E402
from cvaezoo.exported import EXPORT_FORMAT  # noqa: E402
from cvaezoo.hub import download_export  # noqa: E402


@pytest.fixture(scope="module")
def exports(fitted, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("exports")
    return {"cvae1": bare_export(fitted["cvae1"], root / "cvae1"),
            "cvae2": bare_export(fitted["cvae2"], root / "cvae2", "float16")}


@pytest.fixture
def hub():
    server = HubServer()
    yield server
    server.stop()


def hub_env(hub: HubServer, home: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(home), "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1", **extra}


@pytest.mark.slow  # five runs of the command-line tool
def test_the_client_downloads_then_uses_its_cache_with_the_hub_gone_and_offline(exports, hub, tmp_path):
    hub.add("zoo/cvae1", "main", exports["cvae1"])
    image = exports["cvae1"] / "samples.png"
    command = ["cvaezoo-classify", "hf://zoo/cvae1", "--images", str(image)]
    env = hub_env(hub, tmp_path / "hf")
    first = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert ("GET", "/zoo/cvae1/resolve/main/model.safetensors") in hub.requests
    local = subprocess.run(["cvaezoo-classify", str(exports["cvae1"]), "--images", str(image), "--out",
                            str(tmp_path / "local")], capture_output=True, text=True, timeout=300)
    assert (tmp_path / "classify" / "zoo_cvae1" / "predictions.csv").read_text() == \
        (tmp_path / "local" / "predictions.csv").read_text()  # the same model, the same answers
    hub.stop()
    for extra in ({}, {"HF_HUB_OFFLINE": "1"}):
        again = subprocess.run(command, env=hub_env(hub, tmp_path / "hf", **extra), cwd=tmp_path,
                               capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, (extra, again.stderr)
        assert local.stdout.splitlines()[1] == again.stdout.splitlines()[1]
    missing = subprocess.run(["cvaezoo-classify", "hf://zoo/other", "--images", str(image)],
                             env=hub_env(hub, tmp_path / "hf", HF_HUB_OFFLINE="1"), cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2
    assert missing.stderr.strip() == ("cvaezoo-classify: error: hf://zoo/other: config.json is not in the Hub cache "
                                      "and the Hub cannot be reached (offline: HF_HUB_OFFLINE=1, or no connection)")


def test_a_revision_a_commit_and_the_one_line_errors(exports, hub, tmp_path):
    main_commit = hub.add("zoo/m", "main", exports["cvae1"])
    hub.add("zoo/m", "v2", exports["cvae2"])
    fetch = dict(cache_dir=tmp_path / "cache", endpoint=hub.url)
    assert load_model(download_export("hf://zoo/m", **fetch)).model_name == "cvae1"
    assert load_model(download_export("hf://zoo/m@v2", **fetch)).model_name == "cvae2"
    assert load_model(download_export(f"hf://zoo/m@{main_commit}", **fetch)).model_name == "cvae1"
    config_only = tmp_path / "config_only"
    config_only.mkdir()
    shutil.copy(exports["cvae1"] / "config.json", config_only)
    hub.add("zoo/config_only", "main", config_only)
    newer = shutil.copytree(exports["cvae1"], tmp_path / "newer")
    config = json.loads((newer / "config.json").read_text())
    (newer / "config.json").write_text(json.dumps({**config, "format": EXPORT_FORMAT + 1}))
    hub.add("zoo/newer", "main", newer)
    errors = {
        "hf://zoo/m@v9": "hf://zoo/m@v9: the repository has no revision v9",
        "hf://zoo/absent": f"hf://zoo/absent: no such model repository on {hub.url} (or it is private)",
        "hf://zoo/config_only": "hf://zoo/config_only has no model.safetensors: it is not a cvaezoo export",
        "hf://zoo/newer": f"has export format {EXPORT_FORMAT + 1}, written by a newer cvaezoo",
        "hf://zoo": "a Hub model is named hf://org/name or hf://org/name@revision",
        "hf://zoo/m@": "a Hub model is named hf://org/name or hf://org/name@revision",
        "hf://../x": "a Hub model is named",
        "hf://zoo/m@../../../../escaped": "a revision is a branch, tag or commit",
    }
    for name, message in errors.items():
        with pytest.raises(UserError) as error:
            download_export(name, **fetch)
        assert message in str(error.value) and "\n" not in str(error.value), name
    assert ("GET", "/zoo/newer/resolve/main/model.safetensors") not in hub.requests  # refused before the weights
    with pytest.raises(CheckpointError, match="not in the Hub cache and the Hub cannot be reached"):
        download_export("hf://zoo/m", cache_dir=tmp_path / "empty", endpoint="http://127.0.0.1:9")  # nothing listens


def test_without_the_hub_extra_a_hub_name_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(UserError, match=r"pip install 'cvaezoo\[hub\]'"):
        load_model("hf://zoo/m")


def test_push_creates_the_repository_and_uploads_the_export(exports, tmp_path, monkeypatch, capsys):
    calls = []

    class RecordingApi:
        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id, kwargs))

        def upload_folder(self, **kwargs):
            calls.append(("upload_folder", kwargs))
            return type("Commit", (), {"commit_url": f"{constants.ENDPOINT}/{kwargs['repo_id']}/commit/abc"})()

    monkeypatch.setattr("huggingface_hub.HfApi", RecordingApi)
    push_main([str(exports["cvae1"]), "me/cvae1", "--private"])
    assert calls[0] == ("create_repo", "me/cvae1", {"repo_type": "model", "private": True, "exist_ok": True})
    assert calls[1][1]["folder_path"] == str(exports["cvae1"]) and calls[1][1]["repo_id"] == "me/cvae1"
    assert capsys.readouterr().out.strip().endswith("/me/cvae1/commit/abc")
    calls.clear()
    with pytest.raises(SystemExit):
        push_main([str(tmp_path), "me/cvae1"])  # not an export: nothing is created
    assert calls == [] and "config.json" in capsys.readouterr().err
