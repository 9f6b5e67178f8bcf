"""Run with the code of commit 378172a (before models/base.py was split): tiny checkpoints of each model and their outputs
on fixed inputs, for tests/test_old_checkpoints.py:  python tests/data/old_checkpoints/make.py tests/data/old_checkpoints"""
import json
import sys
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from cvaezoo.models import MODELS

out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
expected = {}
for name in ["cvae1", "cvae2", "cvae3", "cvae4", "m2", "vae", "baseline"]:
    torch.manual_seed(0)
    model = MODELS[name](x_shape=(1, 4, 4), y_dim=3, net={"kind": "mlp", "hidden": [8]}, latent_dim=2)
    x = torch.bernoulli(torch.full((12, 1, 4, 4), 0.4)); y = torch.arange(12) % 3
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")
    trainer.fit(model, DataLoader(TensorDataset(x, y), batch_size=6))
    trainer.save_checkpoint(out / f"{name}.ckpt")
    model.eval()
    row = {"x": x[:4].tolist(), "y": y[:4].tolist()}
    with torch.no_grad():
        torch.manual_seed(1)
        row["elbo"] = model.elbo_terms(x[:4], y[:4], n_samples=1).elbo.tolist() if name != "baseline" else model.elbo_terms(x[:4], y[:4]).elbo.tolist()
        if model.classifies:
            torch.manual_seed(2)
            method, k = next(iter(model.classifier_methods.items()))
            row["probs"] = model.predict_proba(x[:4], method=method, k=k).tolist()
        torch.manual_seed(3)
        cond = y[:2] if model.target_name == "x" else x[:2]
        row["sample"] = model.sample(cond, 2).tolist()
    expected[name] = row
(out / "expected.json").write_text(json.dumps(expected, indent=1))
print({p.name: p.stat().st_size for p in out.iterdir()})
