"""scikit-learn baselines on exactly the split the models use.

    python experiments/baselines.py [data=digits] [data.labels_per_class=10 ...]   (Hydra overrides)

The models see dynamically binarized training images and a fixed binarized test draw; the
baselines are trained on 5 Bernoulli draws of the same training images (only the labelled ones
when data.labels_per_class is set) and scored on the same binarized test images. Prints one
JSON line per baseline.
"""

import json
import sys
import time

import torch
from hydra.utils import instantiate
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier

from cvaezoo.runs import compose_config

cfg = compose_config(["run_dir=.", *sys.argv[1:]])
datamodule = instantiate(cfg.data)
datamodule.setup()
x_train, y_train = datamodule.splits["train"].tensors
if datamodule.labels_per_class is not None:
    x_train, y_train = datamodule.semi_supervised_split()[0].tensors
x_test, y_test = datamodule.splits["test"].tensors
generator = torch.Generator().manual_seed(0)
draws = torch.cat([torch.bernoulli(x_train, generator=generator) for _ in range(5)]).flatten(1).numpy()
labels = y_train.repeat(5).numpy()
for name, classifier in [
    ("LogisticRegression", LogisticRegression(max_iter=2000, C=0.1)),
    ("MLPClassifier", MLPClassifier(hidden_layer_sizes=(512, 256), early_stopping=True, random_state=0, max_iter=200)),
]:
    start = time.time()
    classifier.fit(draws, labels)
    accuracy = float((classifier.predict(x_test.flatten(1).numpy()) == y_test.numpy()).mean())
    print(json.dumps({"model": name, "test/accuracy": accuracy, "n_train": len(y_train),
                      "fit_seconds": round(time.time() - start, 1)}))
