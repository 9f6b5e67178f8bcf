"""Exported models on the Hugging Face Hub, through ``huggingface_hub`` (the optional extra ``hub``).

``hf://org/name[@revision]`` names an exported folder (:mod:`cvaezoo.exported`) in a model repository. Its files
are downloaded one by one into the Hub's cache (``HF_HUB_CACHE``, default ~/.cache/huggingface/hub) and read from
there afterwards; with ``HF_HUB_OFFLINE=1`` only the cache is used. ``HF_ENDPOINT`` points the client at another
server. :func:`push_export` uploads an export (``cvaezoo-push``).
"""

from __future__ import annotations

import re
from pathlib import Path

from cvaezoo.checkpoint_files import CheckpointError
from cvaezoo.errors import UserError, first_line
from cvaezoo.exported import CARD_FILE, CONFIG_FILE, METRICS_FILE, SAMPLES_FILE, WEIGHTS_FILE, read_export_config

HUB_PREFIX = "hf://"
#: one part of a repository id or a revision: no "." or ".." (a path out of the cache), nothing but these characters
_NAME_PART = re.compile(r"^(?!\.{1,2}$)[A-Za-z0-9][A-Za-z0-9._-]*$")
#: what a download fetches: the two files a model needs, then those that describe it (fetched if present)
REQUIRED_FILES = (CONFIG_FILE, WEIGHTS_FILE)
DESCRIBING_FILES = (CARD_FILE, METRICS_FILE, SAMPLES_FILE)


def parse_hub_name(name: str) -> tuple[str, str | None]:
    """``hf://org/name[@revision]`` -> (repository id, revision or None for the default branch)."""
    rest = name.removeprefix(HUB_PREFIX)
    repo_id, _, revision = rest.partition("@")
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(_NAME_PART.match(part) for part in parts) or (revision == "" and "@" in rest):
        raise UserError(f"{name}: a Hub model is named {HUB_PREFIX}org/name or {HUB_PREFIX}org/name@revision (letters, "
                        "digits, '.', '_' and '-')")
    if revision and not all(_NAME_PART.match(part) for part in revision.split("/")):
        raise UserError(f"{name}: a revision is a branch, tag or commit of letters, digits, '.', '_', '-' and '/', "
                        "without '.' or '..' parts")
    return repo_id, revision or None


def _hub():
    try:
        import huggingface_hub
    except ImportError:
        raise UserError("models on the Hugging Face Hub need the hub extra: pip install 'cvaezoo[hub]'") from None
    return huggingface_hub


def download_export(name: str, cache_dir: str | Path | None = None, endpoint: str | None = None) -> Path:
    """The exported folder ``name`` (``hf://org/name[@revision]``) names, downloaded into the Hub's cache (or
    found there; ``cache_dir`` and ``endpoint`` default to huggingface_hub's, from HF_HUB_CACHE and
    HF_ENDPOINT); a missing repository, revision or file is a one-line CheckpointError, and so is a config of a
    newer export format (checked before the weights are fetched)."""
    hub = _hub()
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo_id, revision = parse_hub_name(name)
    at = f"{HUB_PREFIX}{repo_id}" + (f"@{revision}" if revision else "")

    def fetch(filename: str) -> Path:
        try:
            return Path(hub.hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir,
                                            endpoint=endpoint))
        except RevisionNotFoundError:
            raise CheckpointError(f"{at}: the repository has no revision {revision}") from None
        except RepositoryNotFoundError:
            raise CheckpointError(f"{at}: no such model repository on {endpoint or hub.constants.ENDPOINT} (or it is "
                                  "private)") from None
        except LocalEntryNotFoundError:  # (a kind of EntryNotFoundError)
            raise CheckpointError(f"{at}: {filename} is not in the Hub cache and the Hub cannot be reached "
                                  "(offline: HF_HUB_OFFLINE=1, or no connection)") from None
        except EntryNotFoundError:
            raise CheckpointError(f"{at} has no {filename}: it is not a cvaezoo export") from None
        except HfHubHTTPError as exc:  # any other answer of the server (the ones above are kinds of it)
            raise CheckpointError(f"{at}: the Hub answered {first_line(exc)}") from None

    folder = fetch(CONFIG_FILE).parent
    read_export_config(folder)
    fetch(WEIGHTS_FILE)
    for filename in DESCRIBING_FILES:
        try:
            fetch(filename)
        except CheckpointError:
            pass  # a card or a sample grid is welcome, not needed
    return folder


def push_export(folder: Path, repo_id: str, private: bool = False, revision: str | None = None) -> str:
    """Upload an exported folder to the model repository ``repo_id`` (made if it does not exist); returns the
    commit's URL. The folder is checked first: an export of this cvaezoo, with its weights."""
    hub = _hub()
    read_export_config(folder)
    if not (folder / WEIGHTS_FILE).is_file():
        raise CheckpointError(f"{folder} has no {WEIGHTS_FILE}: push a folder cvaezoo-export wrote")
    parse_hub_name(HUB_PREFIX + repo_id)
    if revision is not None:
        parse_hub_name(f"{HUB_PREFIX}{repo_id}@{revision}")
    from huggingface_hub.errors import HfHubHTTPError

    api = hub.HfApi()
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        commit = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model", revision=revision,
                                   commit_message="cvaezoo-export")
    except (HfHubHTTPError, OSError) as exc:  # refused, no token, no connection
        raise UserError(f"pushing to {repo_id}: {first_line(exc)}") from None
    return str(commit.commit_url)

