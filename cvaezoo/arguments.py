"""Command-line arguments, checked where they are parsed: one validator per kind of value (argparse ``type=``),
used by every tool, and a parser whose errors are one line, ``<tool>: error: <what>``, with exit status 2,
as the tools' own errors are (:func:`cvaezoo.errors.one_line_errors`)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

#: seeds numpy, and so Lightning's seed_everything, accept
SEED_MAX = 2**32 - 1


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, printing a bad argument as one line (the usage stays under --help)."""

    def error(self, message: str) -> None:  # argparse's own ends in exit status 2 as well
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def count(minimum: int = 1) -> Callable[[str], int]:
    """An integer >= ``minimum``: a number of samples, examples, draws."""
    wanted = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"

    def parse(text: str) -> int:
        value = _int(text)
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}")
        return value

    return parse


positive_int = count(1)
nonnegative_int = count(0)


def integer(text: str) -> int:
    """Any integer (a class label; its range depends on the model, checked there)."""
    value = _int(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}")
    return value


def seed(text: str) -> int:
    """A random seed: an integer in [0, 2**32 - 1]."""
    value = _int(text)
    if value is None or not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, {SEED_MAX}], got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (a temperature, a scale)."""
    value = _float(text)
    if value is None or not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def rate(text: str) -> float:
    """A rate in [0, 1) (a false-rejection rate)."""
    value = _float(text)
    if value is None or not 0 <= value < 1:  # NaN fails both comparisons
        raise argparse.ArgumentTypeError(f"must be a rate in [0, 1), got {text!r}")
    return value


def output_directory(text: str) -> Path:
    """A folder to write into: an existing folder or a path that does not exist yet (made when writing)."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a directory")
    return path
