"""Standard datasets fetched on request: a cache folder, pinned sha256 checksums, several mirrors, atomic writes.

Nothing is downloaded unless a data config names ``mirrors`` and a file is missing. A download is written
to a temporary file beside its target, checked (complete, and its sha256 equal to the pinned one) and only
then renamed into place, so an interrupted or corrupt transfer never passes as the file. A dataset with
mirrors uses no file unchecked: one already present needs a pinned sha256 too, and must match it. Without
mirrors (a local copy, e.g. ``data=idx``) pins are optional: the files that have one are checked.
"""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from cvaezoo.errors import MissingFileError, UserError

#: where standard datasets are cached unless a config sets ``data.root``
CACHE_ENV = "CVAEZOO_DATA"
CHUNK = 1 << 20


class DownloadError(MissingFileError):
    """No mirror delivered a file whose checksum matches the pinned one."""


def cache_dir(dataset: str) -> Path:
    """``$CVAEZOO_DATA/<dataset>``, else ``$XDG_CACHE_HOME/cvaezoo/<dataset>`` (default ``~/.cache/cvaezoo``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser() / dataset
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return base / "cvaezoo" / dataset


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download_once(url: str, part: Path, timeout: float) -> str:
    """Stream ``url`` into ``part``; return its sha256. Raises OSError (urllib's errors are OSErrors) when the
    transfer fails or ends before the length the server announced."""
    digest, received = hashlib.sha256(), 0
    with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
        announced = response.headers.get("Content-Length")
        for chunk in iter(lambda: response.read(CHUNK), b""):
            out.write(chunk)
            digest.update(chunk)
            received += len(chunk)
    if announced is not None and received != int(announced):
        raise OSError(f"transfer ended after {received} of {announced} bytes")
    return digest.hexdigest()


def fetch(name: str, folder: Path, mirrors: Sequence[str], sha256: Mapping[str, str], timeout: float = 60.0) -> Path:
    """``folder/name``, downloaded from the first mirror (``<mirror>/<name>``) that delivers it whole and with
    the pinned checksum, unless it is there already. A file already present is checked against its pin (a
    mismatch is an error; nothing of the user's is deleted); without a pin it is refused, not used unchecked."""
    target = folder / name
    expected = sha256.get(name)
    if target.is_file():
        check_sha256(target, sha256, required=True)
        return target
    if not expected:
        raise UserError(f"no sha256 pinned for {name}: add it to data.sha256 (downloads are always checked)")
    folder.mkdir(parents=True, exist_ok=True)
    failures = []
    for mirror in mirrors:
        url = f"{str(mirror).rstrip('/')}/{name}"
        part = folder / f".{name}.{os.getpid()}.part"
        print(f"cvaezoo: downloading {url} -> {target}", file=sys.stderr, flush=True)
        try:
            got = _download_once(url, part, timeout)
            if got != expected:
                failures.append(f"{url}: sha256 {got} is not the pinned {expected}")
                continue
            os.replace(part, target)  # atomic: the name appears only for a complete, checked file
            return target
        except (OSError, ValueError) as exc:  # URLError, HTTPError, timeouts, refused connections, bad URLs
            reason = getattr(exc, "reason", None) or exc
            failures.append(f"{url}: {reason}")
        finally:
            part.unlink(missing_ok=True)
    raise DownloadError(
        f"could not download {name} ({'; '.join(failures) or 'no mirrors given'}). Offline? Copy {name} "
        f"(sha256 {expected}) into {folder}, or point data.root at a folder that has it"
    )


def check_sha256(path: Path, sha256: Mapping[str, str], required: bool = False) -> None:
    """A file with a pinned checksum must match it (a stale or damaged copy in the cache is named, not used).
    ``required`` (a dataset with mirrors, whose config pins every file): a file without a pin is refused."""
    expected = sha256.get(path.name)
    if not expected and required:
        raise UserError(f"{path}: no sha256 pinned for {path.name} in data.sha256, so it cannot be checked; pin it "
                        "there, or set data.mirrors=[] to read a local copy with optional pins")
    if expected and (got := sha256_of(path)) != expected:
        raise UserError(f"{path}: sha256 {got} does not match the expected {expected} (delete it to download again)")
