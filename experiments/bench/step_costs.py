"""Where a training step's time goes: cvaezoo's MLP CVAE-1 step (batch 256) against the plain loop, with one of
cvaezoo's additions switched off at a time, several repeats (issue #26, items 1 and 4).

    python experiments/bench/step_costs.py    # writes experiments/bench/results/step_costs.{md,json}

Each variant trains the same model (same initial weights, the model's Adam, the MNIST5k data module's batches,
dynamic binarisation) for the same steps, each variant step by step beside the plain loop (a plain step after each
Lightning step, timed apart), so that its time over the plain loop is measured at the same moments; a component's
cost is the median of that overhead with it minus the median without it. The spread of the same variant across
repeats is reported beside each cost: a difference below it is noise. Each addition is also timed alone (many calls on one real batch), which resolves costs far below that
spread; so are the data path (a batch from the device copy or from a DataLoader) and the optimiser (fused Adam
or torch's per-tensor loop), which the plain loop shares.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import ExitStack
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import torch

from cvaezoo.models import MODELS
from cvaezoo.models.guard import NonFiniteGuard
from cvaezoo.models.training import STEP_TERMS, TrainedModel
from experiments.bench.throughput import make, paired_step_ms

#: what each variant switches off (a patch of the model classes, undone afterwards)
SWITCHES = {
    "metric updates": lambda: mock.patch.object(TrainedModel, "accumulate", lambda self, *args: None),
    "finiteness guard": lambda: mock.patch.object(NonFiniteGuard, "on_before_optimizer_step",
                                                  lambda self, optimizer: self.take_pending_terms(update_taken=True)),
}
VARIANTS = {"full": (), **{f"without {name}": (name,) for name in SWITCHES}, "bare Lightning": tuple(SWITCHES)}


def lightning_step_ms(model_name: str, net: str, batch_size: int, steps: int, off: tuple[str, ...]) -> tuple[float, float]:
    """(cvaezoo, plain loop) ms per step with the additions ``off`` switched off, timed step by step side by side."""
    with ExitStack() as stack:
        for name in off:
            stack.enter_context(SWITCHES[name]())
        return paired_step_ms(model_name, net, batch_size, steps)


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
    optimizer = model.configure_optimizers()
    per_tensor = torch.optim.Adam(model.parameters(), lr=model.hparams.lr)
    model._trainer = SimpleNamespace(log_every_n_steps=50, world_size=1, global_step=0)  # what the hooks read

    def work():
        loss = model.training_loss(x, y, model.elbo_terms(x, y), model.kl_weight()).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    terms = model.elbo_terms(x, y)
    loss = model.training_loss(x, y, terms, 1.0).detach()
    per_example = torch.stack([-(terms.recon + terms.kl), terms.recon, terms.kl, loss, torch.ones_like(loss)]).detach()

    def terms_in_and_out():
        model.accumulate("train", STEP_TERMS, per_example)
        model.take_pending_terms(update_taken=True)

    def guard():
        model.accumulate("train", STEP_TERMS, per_example)
        model.on_before_optimizer_step(optimizer)

    def first_batch(loader):
        return lambda: next(iter(loader))

    work()  # gradients exist for the guard's check
    loader = make(model_name, net, batch_size, device_batches=False)[0].train_dataloader()
    return {
        "the step's work: forward, backward, fused Adam (plain loop)": per_call_us(work, repeats // 3),
        "metric updates (accumulate + take_pending_terms: one stack, one sum, one TermMeans.update)": per_call_us(
            terms_in_and_out, repeats),
        "finiteness of terms and gradients (on_before_optimizer_step: foreach norm, one host sync)": per_call_us(
            guard, repeats),
        "dynamic binarisation (torch.bernoulli on one batch; the plain loop does it too)": per_call_us(
            lambda: torch.bernoulli(grey), repeats),
        "a batch from the device copy (DeviceBatches; first batch of a pass, permutation included)": per_call_us(
            first_batch(datamodule.train_dataloader()), repeats),
        "a batch from a DataLoader (device_batches=false; first batch of a pass)": per_call_us(
            first_batch(loader), repeats),
        "Adam step, fused (the models' optimiser)": per_call_us(optimizer.step, repeats),
        "Adam step, torch's per-tensor loop (before)": per_call_us(per_tensor.step, repeats),
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
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    overheads: dict[str, list[float]] = {name: [] for name in VARIANTS}  # variant - plain loop, step by step
    for _ in range(args.repeats):  # alternating: drift of the shared machine hits every variant alike
        for name, off in VARIANTS.items():
            ours, plain = lightning_step_ms(args.model, args.net, args.batch_size, args.steps, off)
            times[name].append(ours)
            overheads[name].append(ours - plain)
    median = {name: statistics.median(values) for name, values in overheads.items()}
    spread = {name: (max(values) - min(values)) / 2 for name, values in overheads.items()}
    costs = {name: 1000 * (median["full"] - median[f"without {name}"]) for name in SWITCHES}
    costs["Lightning itself (bare Lightning - plain loop)"] = 1000 * median["bare Lightning"]
    plain_ms = statistics.median(t - o for name in VARIANTS for t, o in zip(times[name], overheads[name]))
    result = {"model": args.model, "net": args.net, "batch_size": args.batch_size, "steps": args.steps,
              "repeats": args.repeats, "step_ms": times, "overhead_ms": overheads, "median_overhead_ms": median,
              "half_range_ms": spread, "plain_loop_ms": plain_ms, "cost_us": costs,
              "isolated_us": isolated_costs_us(args.model, args.net, args.batch_size),
              "ratio_full_to_plain": plain_ms / (plain_ms + median["full"])}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "step_costs.json").write_text(json.dumps(result, indent=1))
    lines = [f"# Step costs: {args.model}, {args.net} nets, batch {args.batch_size} ({args.repeats} repeats of "
             f"{args.steps} steps, each variant timed step by step beside the plain loop; medians)", "",
             f"plain loop: {plain_ms:.3f} ms per step", "",
             "| variant | ms per step | over the plain loop, ms (median) | ± half range |", "|---|---|---|---|"]
    lines += [f"| {name} | {statistics.median(times[name]):.3f} | {median[name]:.3f} | {spread[name]:.3f} |"
              for name in VARIANTS]
    lines += ["", "| component | cost, µs per step |", "|---|---|"]
    lines += [f"| {name} | {value:.0f} |" for name, value in costs.items()]
    lines += ["", "| timed alone (many calls on one real batch) | µs per call |", "|---|---|"]
    lines += [f"| {name} | {value:.0f} |" for name, value in result["isolated_us"].items()]
    lines += ["", f"full / plain loop: {result['ratio_full_to_plain']:.3f}× (examples/s ratio)"]
    (args.out / "step_costs.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
