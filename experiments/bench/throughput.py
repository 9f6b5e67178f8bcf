"""Training throughput of cvaezoo (LightningModule + Trainer) against a hand-written PyTorch loop.

Both train the same network (same class, same initial weights, the model's own optimiser, the same batches
from the data module) for the same number of steps, in one process, step by step side by side (a plain step
after each Lightning step, timed apart), several repeats. Also: the
fraction of time spent waiting for data, batch-size scaling, torch.compile, peak memory per model, and the VAE
side by side with pythae's trainer (``--studies pythae``, the ``bench`` extra).

    python experiments/bench/throughput.py            # writes experiments/bench/results/throughput.{md,csv}
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import torch

from cvaezoo.data import MNIST5k
from cvaezoo.models import MODELS

NETS = {"mlp": {"kind": "mlp", "hidden": [512, 256]}, "conv": {"kind": "conv", "channels": [32, 64], "hidden": [256]}}
WARMUP = 10


def make(model_name: str, net: str, batch_size: int, compile_nets: bool = False, device_batches: bool | None = None):
    datamodule = MNIST5k(batch_size=batch_size, binarize="dynamic", device_batches=device_batches)
    datamodule.setup()
    torch.manual_seed(0)  # the likelihood is each model class's default for class labels
    model = MODELS[model_name](x_shape=(1, 28, 28), net=NETS[net], compile=compile_nets)
    return datamodule, model


class StepClock(L.Callback):
    """Wall time from the start of step WARMUP to the end of training."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == WARMUP and not hasattr(self, "start"):
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module):
        self.elapsed = time.perf_counter() - self.start


def lightning_rate(model_name, net, batch_size, steps, compile_nets=False) -> float:
    datamodule, model = make(model_name, net, batch_size, compile_nets)
    clock = StepClock()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        num_sanity_val_steps=0, callbacks=[clock])
    trainer.fit(model, datamodule=datamodule)
    return (steps - WARMUP) * batch_size / clock.elapsed


class PlainLoop:
    """The hand-written loop, one step at a time: the data module's batches, the same dynamic binarisation, the
    model's own per-example objective (for M2 it includes alpha * -log q(y|x)) and its optimiser (fused Adam)."""

    def __init__(self, model_name: str, net: str, batch_size: int) -> None:
        self.datamodule, self.model = make(model_name, net, batch_size)
        self.model.train()
        self.optimizer = self.model.configure_optimizers()
        self.batches = iter(self.datamodule.train_dataloader())

    def step(self) -> None:
        batch = next(self.batches, None)
        if batch is None:  # a new epoch: a new pass over the data
            self.batches = iter(self.datamodule.train_dataloader())
            batch = next(self.batches)
        x, y = batch
        x = torch.bernoulli(x)
        loss = self.model.training_loss(x, y, self.model.elbo_terms(x, y), self.model.kl_weight()).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()


class PairedPlainStep(L.Callback):
    """Runs one plain-loop step after each Lightning step, timed apart: the two loops are measured step by step
    at the same moments, so the drift of a shared machine's speed (±10 % between runs seconds apart here) hits
    both alike. A Lightning step is the time from one batch's start to the next, less the plain step in between."""

    def __init__(self, plain: PlainLoop) -> None:
        self.plain, self.starts, self.plain_seconds = plain, [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.starts.append(time.perf_counter())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        start = time.perf_counter()
        self.plain.step()
        self.plain_seconds.append(time.perf_counter() - start)

    def on_train_end(self, trainer, pl_module):
        self.starts.append(time.perf_counter())

    def step_ms(self) -> tuple[float, float]:
        """Mean ms per step after WARMUP steps (epoch ends included): (cvaezoo, plain loop)."""
        intervals = [b - a - p for a, b, p in zip(self.starts, self.starts[1:], self.plain_seconds)][WARMUP:]
        return 1000 * statistics.fmean(intervals), 1000 * statistics.fmean(self.plain_seconds[WARMUP:])


def paired_step_ms(model_name: str, net: str, batch_size: int, steps: int) -> tuple[float, float]:
    """(cvaezoo, plain loop) ms per step, measured step by step side by side (:class:`PairedPlainStep`)."""
    datamodule, model = make(model_name, net, batch_size)
    paired = PairedPlainStep(PlainLoop(model_name, net, batch_size))
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        num_sanity_val_steps=0, callbacks=[paired])
    trainer.fit(model, datamodule=datamodule)
    return paired.step_ms()


def paired_row(study: str, model_name: str, net: str, batch_size: int, steps: int, repeats: int) -> dict:
    """Median over repeats of the plain loop's ms per step over cvaezoo's (= the examples/s ratio), with the range."""
    pairs = [paired_step_ms(model_name, net, batch_size, steps) for _ in range(repeats)]
    ratios = [plain / ours for ours, plain in pairs]
    ours = statistics.median(p[0] for p in pairs)
    plain = statistics.median(p[1] for p in pairs)
    return {"study": study, "model": model_name, "net": net, "batch_size": batch_size,
            "cvaezoo_ex_per_s": 1000 * batch_size / ours, "plain_ex_per_s": 1000 * batch_size / plain,
            "ratio": statistics.median(ratios), "ratio_range": f"{min(ratios):.3f}-{max(ratios):.3f}"}


def data_wait_fraction(batch_size: int, steps: int, rate: float) -> float:
    """Time to draw `steps` batches from the training loader alone, over the time to train on them."""
    datamodule = MNIST5k(batch_size=batch_size, binarize="dynamic")
    datamodule.setup()
    start, drawn = time.perf_counter(), 0
    while drawn < steps:
        for _ in datamodule.train_dataloader():
            drawn += 1
            if drawn == steps:
                break
    return (time.perf_counter() - start) / (steps * batch_size / rate)


def peak_memory_mb(model_name: str, net: str, steps: int) -> float:
    """Peak resident memory (VmHWM) of a fresh process that trains `steps` steps, in MiB.

    Not ru_maxrss: Linux carries that over from the parent across fork and exec.
    """
    code = ("import sys; sys.argv=['x']; from experiments.bench.throughput import lightning_rate; "
            f"lightning_rate({model_name!r}, {net!r}, 256, {steps}); "
            "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def machine() -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), lightning {L.__version__}, Python {platform.python_version()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--studies", default=parser_default_studies(),
                        help="comma-separated subset of overhead, batch, compile, memory, pythae (all by default)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    studies = set(args.studies.split(","))
    rows = []
    for batch_size, net in [(b, n) for b in sorted({args.batch_size, 64}, reverse=True) for n in NETS] if "overhead" in studies else ():
        for name in MODELS:
            row = paired_row("overhead", name, net, batch_size, args.steps, args.repeats)
            row["data_wait_fraction"] = data_wait_fraction(batch_size, args.steps, row["cvaezoo_ex_per_s"])
            rows.append(row)
            print(json.dumps(row), flush=True)
    for batch_size in (64, 128, 256, 512, 1024) if "batch" in studies else ():
        rows.append(paired_row("batch size", "cvae1", "mlp", batch_size, args.steps, args.repeats))
        print(json.dumps(rows[-1]), flush=True)
    for net in NETS if "compile" in studies else ():
        eager, compiled = [], []
        for _ in range(args.repeats):
            eager.append(lightning_rate("cvae1", net, args.batch_size, args.steps))
            compiled.append(lightning_rate("cvae1", net, args.batch_size, args.steps, compile_nets=True))
        rows.append({"study": "torch.compile", "model": "cvae1", "net": net, "batch_size": args.batch_size,
                     "cvaezoo_ex_per_s": statistics.median(eager), "compiled_ex_per_s": statistics.median(compiled),
                     "ratio": statistics.median(compiled) / statistics.median(eager)})
        print(json.dumps(rows[-1]), flush=True)
    if "pythae" in studies:
        rows += pythae_rows(args.repeats)
    for net in NETS if "memory" in studies else ():
        for name in MODELS:
            rows.append({"study": "memory", "model": name, "net": net, "batch_size": args.batch_size,
                         "peak_rss_mib": peak_memory_mb(name, net, 50)})
            print(json.dumps(rows[-1]), flush=True)
    write(rows, args)


def pythae_rows(repeats: int, epochs: int = 50) -> list[dict]:
    """The VAE (MLP 784-512-256-16, Bernoulli pixels) for ``epochs`` epochs of 4 000 binarised digits at batch 256,
    whole runs timed: cvaezoo's Trainer (no validation, logger or checkpoints) against pythae 0.1.2's BaseTrainer
    with its default Adam and with fused Adam (so that the optimiser alone is not the difference), alternating."""
    from experiments.bench.pythae_vae import cvaezoo_run, pythae_run

    times: dict[str, list[float]] = {"cvaezoo": [], "pythae": [], "pythae (fused Adam)": []}
    for _ in range(repeats):
        times["cvaezoo"].append(cvaezoo_run(epochs))
        times["pythae"].append(pythae_run(epochs, fused=False))
        times["pythae (fused Adam)"].append(pythae_run(epochs, fused=True))
    rows = []
    for name in ("pythae", "pythae (fused Adam)"):
        ours, theirs = statistics.median(times["cvaezoo"]), statistics.median(times[name])
        rows.append({"study": f"vs {name}", "model": "vae", "net": "mlp", "batch_size": 256, "cvaezoo_ex_per_s": ours,
                     "pythae_ex_per_s": theirs, "ratio": ours / theirs,
                     "ratio_range": f"{min(a / b for a, b in zip(times['cvaezoo'], times[name])):.3f}-"
                                    f"{max(a / b for a, b in zip(times['cvaezoo'], times[name])):.3f}"})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def parser_default_studies() -> str:
    return "overhead,batch,compile,memory,pythae"


def write(rows: list[dict], args: argparse.Namespace) -> None:
    columns = ["study", "model", "net", "batch_size", "cvaezoo_ex_per_s", "plain_ex_per_s", "compiled_ex_per_s",
               "pythae_ex_per_s", "ratio", "ratio_range", "data_wait_fraction", "peak_rss_mib"]
    name = "throughput" if args.studies == parser_default_studies() else "throughput_" + args.studies.replace(",", "_")
    with open(args.out / f"{name}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    fmt = lambda v: "" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))  # noqa: E731
    lines = [
        "# Training throughput: cvaezoo vs a plain PyTorch loop", "",
        f"- date: {datetime.date.today()}", f"- machine: {machine()}",
        f"- command: `python experiments/bench/throughput.py --steps {args.steps} --repeats {args.repeats} "
        f"--batch-size {args.batch_size} --studies {args.studies}`",
        f"- embedded MNIST, dynamic binarisation, fused Adam; examples/s over steps {WARMUP}..{args.steps}, median of "
        f"{args.repeats} repeats, cvaezoo and the plain loop timed step by step side by side (overhead, batch size) "
        f"or alternating runs; ratio = cvaezoo / plain (overhead, batch size), compiled / eager, or "
        "cvaezoo / pythae (whole runs); ratio_range: the lowest and highest ratio of single repeats.", "",
        "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
    ]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    (args.out / f"{name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
