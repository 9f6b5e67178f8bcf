"""How live the page feels: the latency of each API call of cvaezoo-serve, over HTTP on this machine, with the
pretrained models it serves by default (every one but the reference classifier).

    python experiments/page/latency.py [--repeats 100] [--out experiments/page/latency.md]

Starts ``cvaezoo-serve --port 0`` as a user would, waits for its address, then times, one request at a time:
classify-all (POST /api/classify with a test digit as a 280x280 PNG, as the page sends a drawing; every loaded model
answers), a slider move (POST /api/decode), a new grid (POST /api/generate, 16 samples) and a restyle (POST
/api/restyle). Reports the median and the 95th percentile of each (target: <= 100 ms on 2 CPU cores for
classify-all and a slider move).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import torch

from cvaezoo.runs import compose_config, instantiate_checked
from cvaezoo.serve import png_data_url


def post(url: str, payload: dict) -> float:
    body = json.dumps(payload).encode()
    started = time.perf_counter()
    with urllib.request.urlopen(urllib.request.Request(url, body, {"Content-Type": "application/json"}), timeout=60) as r:
        r.read()
    return (time.perf_counter() - started) * 1000


def drawing(digit: torch.Tensor) -> str:
    """A test digit as the page sends a drawing: a 280x280 PNG."""
    large = torch.nn.functional.interpolate(digit[None], size=(280, 280), mode="nearest")[0]
    return png_data_url(large)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "latency.md")
    args = parser.parse_args()
    server = subprocess.Popen([sys.executable, "-c", "from cvaezoo.serve import main; main()", "--port", "0"],
                              stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        models, url = line.removeprefix("cvaezoo-serve: ").rsplit(" on ", 1)
        url = url.strip()
        x, _ = instantiate_checked(compose_config(["run_dir=.", "data.binarize=none"]).data).split_tensors("test")
        images = [drawing(x[i]) for i in range(args.repeats)]
        calls = {
            "classify-all (every loaded model)": lambda i: post(url + "api/classify", {"image": images[i]}),
            "slider move (decode one z)": lambda i: post(url + "api/decode", {"model": "mnist5k/cvae1", "label": i % 10,
                                                                              "eps": [((i % 7) - 3) / 2, 0.5, -0.5, 0]}),
            "new grid (16 samples)": lambda i: post(url + "api/generate", {"model": "mnist5k/cvae1", "label": i % 10,
                                                                           "n": 16, "seed": i}),
            "restyle (10 labels)": lambda i: post(url + "api/restyle", {"model": "mnist5k/cvae2", "image": images[i]}),
        }
        rows = []
        for name, call in calls.items():
            call(0)  # warm up
            times = sorted(call(i) for i in range(args.repeats))
            rows.append((name, statistics.median(times), times[int(0.95 * (len(times) - 1))], max(times)))
    finally:
        server.terminate()
        server.wait(timeout=30)
    lines = [f"Models: {models}; {args.repeats} requests each, one at a time, over HTTP on 127.0.0.1; "
             f"{torch.get_num_threads()} torch threads, {platform.processor() or platform.machine()}, "
             f"{time.strftime('%Y-%m-%d')}.", "", "| call | median (ms) | 95th percentile (ms) | slowest (ms) |",
             "|---|---|---|---|"]
    lines += [f"| {name} | {median:.1f} | {p95:.1f} | {slowest:.1f} |" for name, median, p95, slowest in rows]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
