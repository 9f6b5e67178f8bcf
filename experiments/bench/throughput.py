"""Training throughput of cvaezoo (LightningModule + Trainer) against a hand-written PyTorch loop.

Both train the same network (same class, same initial weights, same Adam, same in-memory batches)
for the same number of steps, in one process, alternating, several repeats. Also: the fraction of
time spent waiting for data, batch-size scaling, torch.compile, and peak memory per model.

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


def make(model_name: str, net: str, batch_size: int, compile_nets: bool = False):
    datamodule = MNIST5k(batch_size=batch_size, binarize="dynamic")
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


def plain_rate(model_name, net, batch_size, steps) -> float:
    datamodule, model = make(model_name, net, batch_size)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=model.hparams.lr)
    step, start = 0, None
    while step < steps:
        for x, y in datamodule.train_dataloader():
            if step == WARMUP:
                start = time.perf_counter()
            x = torch.bernoulli(x)  # the same dynamic binarisation the data module applies
            # the model's own per-example objective (for M2 it includes alpha * -log q(y|x)): the same work
            loss = model.training_loss(x, y, model.elbo_terms(x, y), model.kl_weight()).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step == steps:
                break
    return (steps - WARMUP) * batch_size / (time.perf_counter() - start)


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
                        help="comma-separated subset of overhead, batch, compile, memory")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    studies = set(args.studies.split(","))
    rows = []
    for net in NETS if "overhead" in studies else ():
        for name in MODELS:
            lightning, plain = [], []
            for _ in range(args.repeats):  # alternate so that drifts in machine speed hit both
                lightning.append(lightning_rate(name, net, args.batch_size, args.steps))
                plain.append(plain_rate(name, net, args.batch_size, args.steps))
            row = {"study": "overhead", "model": name, "net": net, "batch_size": args.batch_size,
                   "cvaezoo_ex_per_s": statistics.median(lightning), "plain_ex_per_s": statistics.median(plain)}
            row["ratio"] = row["cvaezoo_ex_per_s"] / row["plain_ex_per_s"]
            row["data_wait_fraction"] = data_wait_fraction(args.batch_size, args.steps, row["cvaezoo_ex_per_s"])
            rows.append(row)
            print(json.dumps(row), flush=True)
    for batch_size in (64, 128, 256, 512, 1024) if "batch" in studies else ():
        lightning = statistics.median(lightning_rate("cvae1", "mlp", batch_size, args.steps) for _ in range(args.repeats))
        plain = statistics.median(plain_rate("cvae1", "mlp", batch_size, args.steps) for _ in range(args.repeats))
        rows.append({"study": "batch size", "model": "cvae1", "net": "mlp", "batch_size": batch_size,
                     "cvaezoo_ex_per_s": lightning, "plain_ex_per_s": plain, "ratio": lightning / plain})
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
    for net in NETS if "memory" in studies else ():
        for name in MODELS:
            rows.append({"study": "memory", "model": name, "net": net, "batch_size": args.batch_size,
                         "peak_rss_mib": peak_memory_mb(name, net, 50)})
            print(json.dumps(rows[-1]), flush=True)
    write(rows, args)


def parser_default_studies() -> str:
    return "overhead,batch,compile,memory"


def write(rows: list[dict], args: argparse.Namespace) -> None:
    columns = ["study", "model", "net", "batch_size", "cvaezoo_ex_per_s", "plain_ex_per_s", "compiled_ex_per_s",
               "ratio", "data_wait_fraction", "peak_rss_mib"]
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
        f"- embedded MNIST, dynamic binarisation, Adam; examples/s over steps {WARMUP}..{args.steps}, median of "
        f"{args.repeats} alternating repeats; ratio = cvaezoo / plain (overhead, batch size) or compiled / eager.", "",
        "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
    ]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    (args.out / f"{name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
