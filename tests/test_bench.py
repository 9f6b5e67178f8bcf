"""The benchmarks run (a few steps each): the step-cost breakdown and the side-by-side with pythae's trainer."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]  # experiments/ is not a package of the install: import it from here


@pytest.fixture(autouse=True)
def importable_experiments(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))


def test_the_step_costs_are_timed_for_every_part():
    from experiments.bench.step_costs import isolated_costs_us, lightning_step_ms

    costs = isolated_costs_us("cvae1", "mlp", 32, repeats=6)
    assert len(costs) == 8 and all(value > 0 for value in costs.values())
    ours, plain = lightning_step_ms("cvae1", "mlp", 32, steps=12, off=("metric updates", "finiteness guard"))
    assert ours > 0 and plain > 0


def test_the_vae_trains_under_both_trainers():
    from experiments.bench.throughput import pythae_rows

    rows = pythae_rows(repeats=1, epochs=1)
    assert [row["study"] for row in rows] == ["vs pythae", "vs pythae (fused Adam)"]
    assert all(row["cvaezoo_ex_per_s"] > 0 and row["pythae_ex_per_s"] > 0 for row in rows)
