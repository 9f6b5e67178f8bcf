"""cvaezoo / plain-loop ratio of a few models (MLP nets, batch 256), median of 3 alternating repeats.

Run it in two checkouts, alternately, to compare commits side by side:
    cd <checkout> && PYTHONPATH=. python experiments/bench/ratio.py cvae1 vae
"""

import statistics
import sys

from experiments.bench.throughput import lightning_rate, plain_rate

for name in sys.argv[1:]:
    ratios = []
    for _ in range(3):
        ratios.append(lightning_rate(name, "mlp", 256, 150) / plain_rate(name, "mlp", 256, 150))
    print(name, round(statistics.median(ratios), 3), [round(r, 3) for r in ratios], flush=True)
