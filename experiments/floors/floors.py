"""Real-vs-real floors of the sample-quality scores at the sizes the studies use.

    python experiments/floors/floors.py OUT.json --mnist-reference runs/reference/mnist5k \
        --digits-reference runs/reference/digits --shapes-reference runs/attributes/reference

A sample-quality score (Fréchet distance, kernel distance, precision, recall; cvaezoo.sample_quality.sample_quality) is
compared here with the same score of a generator that draws exactly from the data: other real images of the same
classes, as many as the study generates, against the same real set. The Fréchet distance is biased upwards at
small sizes and precision/recall saturate below 1, so a recorded score, or a difference between two models, means
something only beside these rows. Each row is repeated with disjoint (or independently drawn) control sets where
the data allow, so the floor comes with its own spread. No model is involved: only the data and the reference
classifier (the same command and seed as each study's reference).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from hydra.utils import instantiate

from cvaezoo.checkpoints import load_reference
from cvaezoo.inference import distinct_rows
from cvaezoo.runs import compose_config
from cvaezoo.sample_quality import control_images, frechet_distance, sample_quality


def data(*overrides: str):
    datamodule = instantiate(compose_config(["run_dir=.", *overrides]).data)
    datamodule.setup()
    return datamodule


def summary(rows: list[dict]) -> dict:
    """Mean, std and every value of each score over the repeats."""
    return {key: {"mean": statistics.fmean(r[key] for r in rows),
                  "std": statistics.stdev(r[key] for r in rows) if len(rows) > 1 else 0.0,
                  "values": [r[key] for r in rows]} for key in rows[0]}


def class_floors(reference, datamodule, n_per_class: int, repeats: int) -> dict:
    """n_per_class training images of each class (disjoint sets, one per repeat) against the whole test split: the
    floor of cvaezoo-evaluate's class-conditional samples (n per class against the test split)."""
    train_x, train_y = datamodule.split_tensors("train")
    test_x, test_y = datamodule.split_tensors("test")
    classes = torch.arange(int(train_y.max()) + 1)
    per_class = int(torch.bincount(train_y).min())
    repeats = min(repeats, per_class // n_per_class)
    rows = []
    for r in range(repeats):  # the r-th block of n images of each class
        block = torch.cat([torch.nonzero(train_y == c)[r * n_per_class:(r + 1) * n_per_class, 0] for c in classes])
        rows.append(sample_quality(reference, test_x, control_images(train_x[block], train_y[block], classes, n_per_class)))
    return {"n_real": len(test_x), "n_generated": n_per_class * len(classes), **summary(rows)}


def equal_size_floors(reference, images: torch.Tensor, n: int, repeats: int) -> dict:
    """Two disjoint random sets of n real images each (the sizes the review quoted: 500 vs 500, 2000 vs 2000)."""
    rows = []
    for r in range(repeats):
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(r))
        rows.append(sample_quality(reference, images[order[:n]], images[order[n:2 * n]]))
    return {"n_real": n, "n_generated": n, **summary(rows)}


def per_class_frechet(reference, datamodule, n_per_class: int) -> dict:
    """The old per-class Fréchet distance between real sets: n training images of class c against the test
    images of class c (about 50), for each class."""
    train_x, train_y = datamodule.split_tensors("train")
    test_x, test_y = datamodule.split_tensors("test")
    values = [frechet_distance(reference, test_x[test_y == c], train_x[train_y == c][:n_per_class])
              for c in range(int(train_y.max()) + 1)]
    return {"n_real_per_class": int((test_y == 0).sum()), "n_generated_per_class": n_per_class,
            "min": min(values), "max": max(values), "values": values}


def quadrant_floors(reference, repeats: int, given: int = 1) -> dict:
    """The quadrant study's completed digits (one per test input) against the true ones: the floor is as many
    other real digits (random training examples, completed with their own true pixels)."""
    datamodule = data("experiment=quadrants", f"data.given_quadrants={given}")
    x, y = datamodule.split_tensors("test")
    train_x, train_y = datamodule.split_tensors("train")
    truth = datamodule.complete(x, y)
    rows = []
    for r in range(repeats):
        pick = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(r))[: len(x)]
        rows.append(sample_quality(reference, truth, datamodule.complete(train_x[pick], train_y[pick])))
    return {"n_real": len(x), "n_generated": len(x), **summary(rows)}


def attribute_floors(reference, n_seen: int, n_unseen: int) -> dict:
    """The attribute study: samples for each combination (n_seen per seen one against the test split, n_unseen
    per held-out one against the held-out split). Its pixels are a function of the attributes alone, so a
    perfect generator draws each combination's one image: n copies of it per combination."""
    datamodule = data("experiment=attributes")
    test_x, _ = datamodule.split_tensors("test")
    rows = {}
    for name, pool, real, n in (("seen", datamodule.split_tensors("train"), test_x, n_seen),
                                ("unseen", datamodule.splits["unseen"].tensors, datamodule.splits["unseen"].tensors[0],
                                 n_unseen)):
        combinations = distinct_rows(datamodule.split_dataset("train").tensors[1]) if name == "seen" \
            else distinct_rows(pool[1])
        one_each = control_images(*pool, combinations, 1)
        perfect = one_each.repeat_interleave(n, dim=0)
        rows[name] = {"n_real": len(real), "n_generated": len(perfect), **sample_quality(reference, real, perfect)}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--mnist-reference", type=Path, required=True)
    parser.add_argument("--digits-reference", type=Path, required=True)
    parser.add_argument("--shapes-reference", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()
    mnist_reference = load_reference(args.mnist_reference)
    mnist = data("data=mnist5k", "data.binarize=none")
    train_x = mnist.split_tensors("train")[0]
    result = {
        "zoo_mnist5k": class_floors(mnist_reference, mnist, 100, args.repeats),
        "zoo_digits": class_floors(load_reference(args.digits_reference), data("data=digits", "data.binarize=none"),
                                   100, args.repeats),
        "mnist5k_500_vs_500": equal_size_floors(mnist_reference, train_x, 500, args.repeats),
        "mnist5k_2000_vs_2000": equal_size_floors(mnist_reference, train_x, 2000, 1),
        "mnist5k_per_class_100_vs_50": per_class_frechet(mnist_reference, mnist, 100),
        "quadrants_q1": quadrant_floors(mnist_reference, args.repeats),
        "attributes": attribute_floors(load_reference(args.shapes_reference), n_seen=100, n_unseen=1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    for name, row in result.items():
        print(name, json.dumps({k: (v["mean"] if isinstance(v, dict) and "mean" in v else v) for k, v in row.items()
                                if k != "values"})[:400])


if __name__ == "__main__":
    main()
