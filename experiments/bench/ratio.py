"""cvaezoo / plain-loop ratio of a few models (MLP nets, batch 256), median of 3 repeats (timed step by step).

    PYTHONPATH=. python experiments/bench/ratio.py cvae1 vae
"""

import sys

from experiments.bench.throughput import paired_row

for name in sys.argv[1:]:
    row = paired_row("overhead", name, "mlp", 256, 150, 3)
    print(name, round(row["ratio"], 3), row["ratio_range"], flush=True)
