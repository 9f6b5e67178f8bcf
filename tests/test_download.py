"""Standard datasets on request, tested against a local HTTP server on 127.0.0.1 that serves generated files:
good files, a corrupt file, a truncated transfer, a dead mirror followed by a good one. No network."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import write_cifar_archive, write_fake_idx_dir

from cvaezoo.data.download import DownloadError, cache_dir, fetch
from cvaezoo.errors import MissingFileError, UserError
from cvaezoo.runs import compose_config, instantiate_checked
from cvaezoo.train import train

IDX_NAMES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
             "t10k-labels-idx1-ubyte.gz"]


class Server:
    """Serves ``files`` under /good/, the same with every file cut short under /truncated/ (the announced
    Content-Length stays the full size), and files with one byte changed under /corrupt/; counts requests."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.requests = files, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # the http.server interface names it
                outer.requests.append(self.path)
                _, kind, name = self.path.split("/", 2)
                if name not in outer.files or kind not in ("good", "truncated", "corrupt"):
                    self.send_error(404)
                    return
                body = outer.files[name]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if kind == "truncated":
                    body = body[: len(body) // 2]
                elif kind == "corrupt":
                    body = bytes([body[0] ^ 1]) + body[1:]
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def dead_mirror() -> str:
    """A URL on 127.0.0.1 where nothing listens (a port that was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/dead"


@pytest.fixture
def idx_files(tmp_path: Path) -> dict[str, bytes]:
    source = write_fake_idx_dir(tmp_path / "source", n_train=60, n_test=20)
    return {name: (source / name).read_bytes() for name in IDX_NAMES}


@pytest.fixture
def server(idx_files) -> Iterator[Server]:
    with Server(idx_files) as running:
        yield running


def pins(files: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.sha256(body).hexdigest() for name, body in files.items()}


def test_a_good_mirror_delivers_a_checked_file(server, idx_files, tmp_path):
    name = IDX_NAMES[3]
    path = fetch(name, tmp_path / "cache", [f"{server.url}/good"], pins(idx_files))
    assert path.read_bytes() == idx_files[name]
    assert sorted(p.name for p in path.parent.iterdir()) == [name]  # no temporary file left behind
    again = fetch(name, tmp_path / "cache", [f"{server.url}/good"], pins(idx_files))
    assert again == path and len(server.requests) == 1  # cached: not downloaded twice
    path.write_bytes(b"damaged")
    with pytest.raises(UserError, match=f"{name}: sha256 [0-9a-f]{{64}} does not match the expected"):
        fetch(name, tmp_path / "cache", [f"{server.url}/good"], pins(idx_files))
    assert path.read_bytes() == b"damaged" and len(server.requests) == 1  # named, kept, not replaced


@pytest.mark.parametrize("kind, reason", [("corrupt", "is not the pinned"), ("truncated", "transfer ended after")])
def test_a_bad_transfer_never_passes_as_the_file(server, idx_files, tmp_path, kind, reason):
    name = IDX_NAMES[2]
    with pytest.raises(DownloadError, match=reason) as failed:
        fetch(name, tmp_path / "cache", [f"{server.url}/{kind}"], pins(idx_files))
    message = str(failed.value)
    assert f"Copy {name} (sha256 {pins(idx_files)[name]}) into {tmp_path / 'cache'}" in message  # what to do offline
    assert list((tmp_path / "cache").iterdir()) == []  # neither the file nor a partial one


def test_a_dead_mirror_then_a_good_one(server, idx_files, tmp_path):
    name = IDX_NAMES[0]
    path = fetch(name, tmp_path / "cache", [dead_mirror(), f"{server.url}/corrupt", f"{server.url}/good"],
                 pins(idx_files))
    assert path.read_bytes() == idx_files[name]
    assert server.requests == [f"/corrupt/{name}", f"/good/{name}"]


def test_offline_names_every_mirror_and_where_the_file_goes(tmp_path):
    with pytest.raises(MissingFileError, match=r"could not download a\.gz \(http://127\.0\.0\.1:\d+/dead/a\.gz: .*\)"):
        fetch("a.gz", tmp_path / "cache", [dead_mirror()], {"a.gz": "0" * 64})


def test_downloads_need_a_pinned_checksum(tmp_path):
    with pytest.raises(UserError, match="no sha256 pinned for a.gz"):
        fetch("a.gz", tmp_path, ["http://127.0.0.1:9/x"], {})


def test_the_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CVAEZOO_DATA", str(tmp_path / "data"))
    assert cache_dir("mnist") == tmp_path / "data" / "mnist"
    monkeypatch.delenv("CVAEZOO_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir("mnist") == tmp_path / "xdg" / "cvaezoo" / "mnist"


@pytest.mark.parametrize("data", ["mnist", "fashion_mnist"])
def test_standard_configs_pin_every_file_and_cache_by_default(data, monkeypatch, tmp_path):
    monkeypatch.setenv("CVAEZOO_DATA", str(tmp_path))
    cfg = compose_config([f"data={data}"])
    assert sorted(cfg.data.sha256) == sorted(IDX_NAMES) and len(cfg.data.mirrors) >= 2
    assert all(len(h) == 64 for h in cfg.data.sha256.values())
    assert instantiate_checked(cfg.data).root == tmp_path / data


def test_data_mnist_downloads_on_first_use_and_trains(server, idx_files, monkeypatch, tmp_path):
    """End to end: the config's mirrors (a dead one first) and pins replaced by the local server's."""
    monkeypatch.setenv("CVAEZOO_DATA", str(tmp_path / "cache"))
    overrides = ["data=mnist", f"data.mirrors=[{dead_mirror()},{server.url}/good]", "data.val_size=20",
                 f"data.sha256={{{','.join(f'{k}:{v}' for k, v in pins(idx_files).items())}}}",
                 "+trainer.fast_dev_run=1", "~logger", f"run_dir={tmp_path / 'run'}"]
    metrics = train(compose_config(overrides))
    assert sorted(p.name for p in (tmp_path / "cache" / "mnist").iterdir()) == sorted(IDX_NAMES)
    assert torch.isfinite(torch.tensor(metrics["test/elbo"]))
    requests = len(server.requests)
    train(compose_config(overrides))
    assert len(server.requests) == requests  # the second run reads the cache


def test_a_damaged_cached_file_is_named_not_used(idx_files, monkeypatch, tmp_path):
    monkeypatch.setenv("CVAEZOO_DATA", str(tmp_path))
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name, body in idx_files.items():
        (folder / name).write_bytes(body)
    datamodule = instantiate_checked(compose_config(["data=mnist", "data.val_size=20"]).data)  # the real pins
    with pytest.raises(UserError, match=r"t10k-images-idx3-ubyte\.gz: sha256 \w+ does not match the expected 8d422c7b"):
        datamodule.setup()
    assert sorted(p.name for p in folder.iterdir()) == sorted(IDX_NAMES)  # nothing deleted


def test_a_cached_file_without_a_pin_is_refused_not_used(idx_files, monkeypatch, tmp_path):
    """A dataset that downloads uses only checked files: present or not, a file needs its pinned sha256.
    Without mirrors (a local copy, as data=idx reads one) pins stay optional."""
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "a.gz").write_bytes(b"anything")
    with pytest.raises(UserError, match=r"cache/a\.gz: no sha256 pinned for a\.gz in data\.sha256"):
        fetch("a.gz", tmp_path / "cache", [dead_mirror()], {})
    monkeypatch.setenv("CVAEZOO_DATA", str(tmp_path))
    (tmp_path / "mnist").mkdir()
    for name, body in idx_files.items():
        (tmp_path / "mnist" / name).write_bytes(body)
    unpinned = ["data=mnist", "data.val_size=20", "data.sha256=null"]
    with pytest.raises(UserError, match=r"mnist/t10k-images-idx3-ubyte\.gz: no sha256 pinned .*data\.mirrors=\[\]"):
        instantiate_checked(compose_config(unpinned).data).setup()
    instantiate_checked(compose_config([*unpinned, "data.mirrors=[]"]).data).setup()  # no mirrors: a local copy
    write_fake_idx_dir(tmp_path / "mnist", gz=False)  # unpacked files beside the pinned .gz ones
    with pytest.raises(UserError, match=r"t10k-images-idx3-ubyte: no sha256 pinned"):
        instantiate_checked(compose_config(["data=mnist", "data.val_size=20"]).data).setup()
    write_cifar_archive(tmp_path / "cifar" / "cifar-10-binary.tar.gz")
    cifar = ["data=cifar10", f"data.root={tmp_path / 'cifar'}", "data.val_size=10", "data.sha256=null"]
    with pytest.raises(UserError, match=r"cifar-10-binary\.tar\.gz: no sha256 pinned"):
        instantiate_checked(compose_config(cifar).data).setup()
    instantiate_checked(compose_config([*cifar, "data.mirrors=[]"]).data).setup()
