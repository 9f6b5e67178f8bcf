"""``cvaezoo-collect <dir> [--out DIR]``: gather every run's results.json below a directory.

Writes ``results.csv`` (one row per run, with the overrides that made it) and ``results.md``
(mean ± std over seeds, one row per combination of the other overrides that vary).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import statistics
from collections import defaultdict
from pathlib import Path

import yaml

from cvaezoo.arguments import ArgumentParser, output_directory
from cvaezoo.errors import UserError, one_line_errors

IGNORED_OVERRIDE_KEYS = {"seed", "hydra.run.dir", "hydra.sweep.dir", "run_dir", "skip_if_done", "trainer.enable_progress_bar", "trainer.enable_model_summary"}


def read_runs(root: Path, include: list[str] | None = None) -> list[dict]:
    """One dict per results.json: its metrics, the numbers of each ``include`` file of the same run
    (e.g. ``evaluate/evaluation.json``), and ``overrides`` (key -> value) from .hydra/."""
    runs = []
    for path in sorted(root.rglob("results.json")):
        row = read_json(path)
        for extra in include or []:
            extra_path = path.parent / extra
            if extra_path.exists():
                values = read_json(extra_path)
                row.update({k: v for k, v in values.items() if isinstance(v, (int, float)) and k not in row})
        overrides_file = path.parent / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.exists() else []
        row["overrides"] = dict(item.split("=", 1) for item in overrides or [] if "=" in item)
        row["run_dir"] = str(path.parent)
        runs.append(row)
    return runs


def read_json(path: Path) -> dict:
    """A run's JSON file as a dict, or a UserError naming it (a run killed while writing, a hand edit)."""
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not readable JSON ({exc})") from None
    if not isinstance(value, dict):
        raise UserError(f"{path} holds a JSON {type(value).__name__}, not an object of metrics")
    return value


SEED_NAME = re.compile(r"(?:(?P<name>.+)_)?s(?P<seed>\d+)")


def split_seed(name: str) -> tuple[str, int] | None:
    """A study's run name ``<name>_s<seed>`` as (name, seed), a bare ``s<seed>`` as ("", seed); None for others."""
    match = SEED_NAME.fullmatch(name)
    return (match["name"] or "", int(match["seed"])) if match else None


def seed_dirs(folder: Path) -> list[tuple[str, int, Path]]:
    """The run directories directly in ``folder`` named ``<name>_s<seed>`` or ``s<seed>`` (a study sweep's
    ``hydra.sweep.subdir``): (name, seed, path), by name, then by seed as a number; [] for an absent folder."""
    found = [(*split, path) for path in folder.glob("*") if path.is_dir() and (split := split_seed(path.name))]
    return sorted(found, key=lambda item: item[:2])


def read_by_model(folder: Path) -> dict[str, list[dict]]:
    """Every ``<model>_s<seed>.json`` directly in ``folder`` (one result per run, e.g. of
    experiments/robustness/study.py), read by :func:`read_json` and grouped by model: model -> its results,
    seeds in order (as numbers); models in name order. Other files are left alone; an absent folder reads as {}."""
    found = [(*split, path) for path in folder.glob("*.json") if (split := split_seed(path.stem)) and split[0]]
    groups: dict[str, list[dict]] = {}
    for model, _, path in sorted(found, key=lambda item: item[:2]):
        groups.setdefault(model, []).append(read_json(path))
    return groups


def registered_models_in(root: Path) -> list[str]:
    """The registry's models (``cvaezoo.models.MODELS``, in its order) that have a folder in ``root``: the models
    of a study laid out as ``<root>/<model>/...``, so that its table shows the models that were run."""
    from cvaezoo.models import MODELS  # here, not at the top: cvaezoo-collect itself needs no torch

    return [name for name in MODELS if (root / name).is_dir()]


def check_choices(runs: list[dict], root: Path, metrics: list[str] | None, include: list[str] | None) -> None:
    """--metrics that no run has and --include files that no run has are errors, not empty columns."""
    known = sorted({k for r in runs for k, v in r.items() if isinstance(v, (int, float))})
    unknown = [m for m in metrics or [] if m not in known]
    if unknown:
        raise UserError(f"--metrics: no run has {unknown}; they have {known}")
    for extra in include or []:
        if not any((Path(r["run_dir"]) / extra).exists() for r in runs):
            raise UserError(f"--include {extra}: no run has this file (looked for <run>/{extra} in the {len(runs)} "
                            f"runs below {root})")


def mean_std(values: list[float], mean_format: str = ".4g", std_format: str = ".2g") -> str:
    """"m ± s" over seeds (sample standard deviation), the value alone for one, "–" for none."""
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:{mean_format}}"
    return f"{statistics.mean(values):{mean_format}} ± {statistics.stdev(values):{std_format}}"


def accuracy_error(values: list[float], n_examples: int) -> float:
    """The standard error of the mean accuracy over seeds, each measured on the same ``n_examples`` test examples,
    as an estimate of the accuracy on new data: the seeds' spread (std / sqrt(seeds)) and the test set's binomial
    error (sqrt(p (1 - p) / n), shared by every seed) combined, sqrt(std^2 / seeds + p (1 - p) / n). Two models'
    accuracies differ beyond their noise when the gap exceeds about twice the root of the sum of their squares."""
    if not values or n_examples < 1:
        raise ValueError(f"an accuracy error needs values and examples, got {len(values)} values and n={n_examples}")
    p = statistics.mean(values)
    spread = statistics.variance(values) / len(values) if len(values) > 1 else 0.0
    return math.sqrt(spread + p * (1 - p) / n_examples)


def mean_error(values: list[float], n_examples: int, digits: str = ".3f") -> str:
    """"m ± e": the mean accuracy over seeds and its :func:`accuracy_error`, "–" for none."""
    if not values:
        return "–"
    return f"{statistics.mean(values):{digits}} ± {accuracy_error(values, n_examples):{digits}}"


def write_dicts_csv(path: Path, rows: list[dict]) -> Path:
    """One CSV row per dict, columns in the order of the first."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def read_dicts_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV with a header (what :func:`write_dicts_csv` writes) as dicts; every value a string."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def group_key(run: dict, varying: list[str]) -> tuple[str, ...]:
    return tuple(run["overrides"].get(k, "") for k in varying)


def summarise(runs: list[dict], metrics: list[str] | None = None) -> tuple[list[str], list[list[str]]]:
    """Header and rows of mean ± std over seeds, grouped by the overrides that vary between runs."""
    keys = sorted({k for r in runs for k in r["overrides"]} - IGNORED_OVERRIDE_KEYS)
    varying = [k for k in keys if len({r["overrides"].get(k) for r in runs}) > 1] or keys
    if metrics is None:
        metrics = sorted({k for r in runs for k, v in r.items() if isinstance(v, (int, float)) and k != "seed"})
    groups: dict[tuple[str, ...], list[dict]] = defaultdict(list)
    for run in runs:
        groups[group_key(run, varying)].append(run)
    header = [*varying, "runs", *metrics]
    rows = []
    for key, members in sorted(groups.items()):
        cells = [*key, str(len(members))]
        for metric in metrics:
            values = [float(m[metric]) for m in members if isinstance(m.get(metric), (int, float))]
            cells.append(mean_std([v for v in values if math.isfinite(v)]))
        rows.append(cells)
    return header, rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table: the header, its rule (``|---|`` per column) and one line per row, each ending in a newline."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_outputs(runs: list[dict], out: Path, metrics: list[str] | None = None) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    columns = sorted({k for r in runs for k in r if k not in ("overrides", "run_dir")})
    override_keys = sorted({k for r in runs for k in r["overrides"]})
    csv_path, md_path = out / "results.csv", out / "results.md"
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*override_keys, *columns, "run_dir"])
        for r in runs:
            writer.writerow([*(r["overrides"].get(k, "") for k in override_keys), *(r.get(c, "") for c in columns), r["run_dir"]])
    header, rows = summarise(runs, metrics)
    md_path.write_text(markdown_table(header, rows))
    return csv_path, md_path


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="cvaezoo-collect", description=__doc__.splitlines()[0],
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="a multirun directory (or any directory holding run directories)")
    parser.add_argument("--out", type=output_directory, default=None,
                        help="where to write results.csv/.md (default: root)")
    parser.add_argument("--metrics", nargs="+", default=None, help="columns of the Markdown table (default: all)")
    parser.add_argument("--include", nargs="+", default=None,
                        help="more JSON files per run to merge, relative to the run directory (e.g. evaluate/evaluation.json)")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        parser.error(f"{args.root} is not a directory")
    with one_line_errors(parser.prog):
        runs = read_runs(args.root, args.include)
        if not runs:
            raise UserError(f"no results.json found below {args.root}: did the runs finish?")
        check_choices(runs, args.root, args.metrics, args.include)
        csv_path, md_path = write_outputs(runs, args.out or args.root, args.metrics)
    print(md_path.read_text())
    print(f"cvaezoo-collect: {len(runs)} runs -> {csv_path}, {md_path}")


if __name__ == "__main__":
    main()
