"""Where a training step's time goes: cvaezoo's MLP CVAE-1 step (batch 256) against the plain loop, with one of
cvaezoo's additions switched off at a time, alternating, several repeats (issue #26, item 1).

    python experiments/bench/step_costs.py    # writes experiments/bench/results/step_costs.{md,json}

Each variant trains the same model (same initial weights, Adam, in-memory batches of the MNIST5k loader, dynamic
binarisation) for the same steps; a component's cost is the median step time with it minus the median without
it. The spread of the same variant across repeats is reported beside each cost: a difference below it is noise.
Each addition is also timed alone (many calls on one real batch), which resolves costs far below that spread.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from unittest import mock

import lightning as L
import torch

from cvaezoo.models import MODELS
from cvaezoo.models.guard import NonFiniteGuard
from cvaezoo.models.training import TrainedModel
from experiments.bench.throughput import StepClock, make, plain_rate

#: what each variant switches off (a patch of the model classes, undone afterwards)
SWITCHES = {
    "metric updates": lambda: mock.patch.object(TrainedModel, "log_terms", lambda self, *args: None),
    "finiteness guard": lambda: _patches(
        mock.patch.object(NonFiniteGuard, "all_finite", lambda self, value: True),
        mock.patch.object(NonFiniteGuard, "on_before_optimizer_step", lambda self, optimizer: None)),
    "own optimizer_step": lambda: mock.patch.object(NonFiniteGuard, "optimizer_step", L.LightningModule.optimizer_step),
}
VARIANTS = {"full": (), **{f"without {name}": (name,) for name in SWITCHES}, "bare Lightning": tuple(SWITCHES)}


@contextmanager
def _patches(*patches):
    with ExitStack() as stack:
        for patch in patches:
            stack.enter_context(patch)
        yield


def lightning_step_ms(model_name: str, net: str, batch_size: int, steps: int, off: tuple[str, ...]) -> float:
    with ExitStack() as stack:
        for name in off:
            stack.enter_context(SWITCHES[name]())
        datamodule, model = make(model_name, net, batch_size)
        clock = StepClock()
        trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                            num_sanity_val_steps=0, callbacks=[clock])
        trainer.fit(model, datamodule=datamodule)
    return 1000 * clock.elapsed / (steps - 10)


def per_call_us(function, repeats: int) -> float:
    function()  # warm
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return 1e6 * (time.perf_counter() - start) / repeats


def isolated_costs_us(model_name: str, net: str, batch_size: int, repeats: int = 300) -> dict[str, float]:
    """Each addition timed alone on one real batch, many calls (its cost with no noise from the rest of the step),
    beside the step's own work (forward, backward, Adam) for scale."""
    datamodule, model = make(model_name, net, batch_size)
    model.train()
    grey, y = next(iter(datamodule.train_dataloader()))
    x = torch.bernoulli(grey)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def work():
        loss = model.training_loss(x, y, model.elbo_terms(x, y), model.kl_weight()).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    terms = model.elbo_terms(x, y)
    loss = model.training_loss(x, y, terms, 1.0)
    detached = type(terms)(recon=terms.recon.detach(), kl=terms.kl.detach())
    work()  # gradients exist for the guard's check
    return {
        "the step's work: forward, backward, Adam (plain loop)": per_call_us(work, repeats // 3),
        "metric updates (log_terms: 6 MeanMetric.update per step)": per_call_us(
            lambda: model.log_terms("train", detached, loss.detach(), 1.0), repeats),
        "finiteness of the loss (all_finite: one host sync)": per_call_us(lambda: model.all_finite(loss.detach()), repeats),
        "finiteness of the gradients (on_before_optimizer_step: foreach norm, one host sync)": per_call_us(
            lambda: model.on_before_optimizer_step(optimizer), repeats),
        "dynamic binarisation (torch.bernoulli on one batch; the plain loop does it too)": per_call_us(
            lambda: torch.bernoulli(grey), repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cvae1", choices=sorted(MODELS))
    parser.add_argument("--net", default="mlp")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in ["plain loop", *VARIANTS]}
    for _ in range(args.repeats):  # alternating: drift of the shared machine hits every variant alike
        rate = plain_rate(args.model, args.net, args.batch_size, args.steps)
        times["plain loop"].append(1000 * args.batch_size / rate)
        for name, off in VARIANTS.items():
            times[name].append(lightning_step_ms(args.model, args.net, args.batch_size, args.steps, off))
    median = {name: statistics.median(values) for name, values in times.items()}
    spread = {name: (max(values) - min(values)) / 2 for name, values in times.items()}
    costs = {name: 1000 * (median["full"] - median[f"without {name}"]) for name in SWITCHES}
    costs["Lightning itself (bare Lightning - plain loop)"] = 1000 * (median["bare Lightning"] - median["plain loop"])
    result = {"model": args.model, "net": args.net, "batch_size": args.batch_size, "steps": args.steps,
              "repeats": args.repeats, "step_ms": times, "median_ms": median, "half_range_ms": spread,
              "cost_us": costs, "isolated_us": isolated_costs_us(args.model, args.net, args.batch_size),
              "ratio_full_to_plain": median["plain loop"] / median["full"]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "step_costs.json").write_text(json.dumps(result, indent=1))
    lines = [f"# Step costs: {args.model}, {args.net} nets, batch {args.batch_size} ({args.repeats} alternating repeats "
             f"of {args.steps} steps, medians)", "", "| variant | ms per step (median) | ± half range |", "|---|---|---|"]
    lines += [f"| {name} | {median[name]:.3f} | {spread[name]:.3f} |" for name in times]
    lines += ["", "| component | cost, µs per step |", "|---|---|"]
    lines += [f"| {name} | {value:.0f} |" for name, value in costs.items()]
    lines += ["", "| timed alone (many calls on one real batch) | µs per call |", "|---|---|"]
    lines += [f"| {name} | {value:.0f} |" for name, value in result["isolated_us"].items()]
    lines += ["", f"full / plain loop: {result['ratio_full_to_plain']:.3f}× (examples/s ratio)"]
    (args.out / "step_costs.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
