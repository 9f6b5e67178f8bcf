"""The project's own errors: bad input from the user (a config value, data, a checkpoint).

They subclass ValueError (and FileNotFoundError for missing files), so callers that catch those keep
working. The command-line tools print them as one line naming the key or file, without a traceback
(:func:`one_line_errors`); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


class UserError(ValueError):
    """A bad config value, bad data or a bad checkpoint: the message names the key or file and what to do."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the config points at does not exist."""


def first_line(exc: BaseException) -> str:
    """An exception's message on one line (its first), or its type's name when it has none: what a one-line error
    quotes of a library's exception."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextmanager
def one_line_errors(program: str) -> Iterator[None]:
    """End ``program`` with ``<program>: error: <message>`` and exit status 2 on a :class:`UserError`.

    ``HYDRA_FULL_ERROR=1`` lets the exception through with its traceback, as Hydra does for its own.
    """
    try:
        yield
    except UserError as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"{program}: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
