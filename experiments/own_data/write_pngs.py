"""Write the embedded MNIST digits as PNG files in class subfolders, the layout of data=folder.

    python experiments/own_data/write_pngs.py DIR [PER_CLASS]     # DIR/<digit name>/<index>.png
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from PIL import Image

from cvaezoo.data import MNIST5k

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def main() -> None:
    root, per_class = Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 200
    images, labels = MNIST5k().load()
    for digit, name in enumerate(NAMES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in torch.nonzero(labels == digit).flatten()[:per_class].tolist():
            Image.fromarray((images[i, 0] * 255).round().byte().numpy()).save(root / name / f"{i:04d}.png")
    print(f"{per_class} PNG files per class in {root}/<class>/")


if __name__ == "__main__":
    main()
