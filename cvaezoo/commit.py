"""Which code made a file: the git commit of the cvaezoo source that runs (a run's results.json and an export's
config.json record it)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def source_commit() -> str | None:
    """The git commit of the cvaezoo source that runs (suffixed "-dirty" with uncommitted changes to its code, the
    shipped models aside), or None for an
    installed copy outside a checkout; a run's results.json records it, and its exports' model cards."""
    source = Path(__file__).resolve().parent.parent
    if not (source / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":!cvaezoo/pretrained"],  # the exports it writes are not its code
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty else "")
