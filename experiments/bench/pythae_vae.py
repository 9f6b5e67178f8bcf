"""The same VAE trained by cvaezoo's Trainer and by pythae 0.1.2's BaseTrainer (the ``bench`` extra), whole runs.

Both train one network: pythae's encoder and decoder wrap the very modules of cvaezoo's ``vae`` model (MLP
784-512-256-16), so the only differences are the trainers and the loss's form (pythae scores sigmoid outputs with
binary cross-entropy, cvaezoo the logits with its Bernoulli likelihood). Data: the 4 000 training digits of the
embedded MNIST, binarised at 0.5, batch 256, Adam at lr 1e-3; examples/s over the whole ``fit`` / ``train``.
"""

from __future__ import annotations

import tempfile
import time

import lightning as L
import torch

from cvaezoo.data import MNIST5k
from cvaezoo.models import MODELS

NET = {"kind": "mlp", "hidden": [512, 256]}
BATCH_SIZE, LR = 256, 1e-3


def data_module() -> MNIST5k:
    datamodule = MNIST5k(batch_size=BATCH_SIZE, binarize="threshold")
    datamodule.setup()
    return datamodule


def vae():
    torch.manual_seed(0)
    return MODELS["vae"](x_shape=(1, 28, 28), net=NET, latent_dim=16, lr=LR)


def cvaezoo_run(epochs: int) -> float:
    datamodule, model = data_module(), vae()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=epochs, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        num_sanity_val_steps=0)
    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    return epochs * len(datamodule.split_dataset("train")) / (time.perf_counter() - start)


def pythae_run(epochs: int, fused: bool) -> float:
    from pythae.data.datasets import BaseDataset
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.trainers import BaseTrainer, BaseTrainerConfig

    ours = vae()

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.net = ours.posterior_net

        def forward(self, x):
            q = self.net(x, x.new_zeros((x.shape[0], 0)))
            return ModelOutput(embedding=q.mean, log_covariance=q.logvar)

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.net = ours.decoder_net

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.net(z)))

    x = data_module().split_dataset("train").tensors[0]
    model = VAE(VAEConfig(input_dim=(1, 28, 28), latent_dim=16, reconstruction_loss="bce"),
                encoder=Encoder(), decoder=Decoder())
    with tempfile.TemporaryDirectory() as out:
        config = BaseTrainerConfig(output_dir=out, num_epochs=epochs, per_device_train_batch_size=BATCH_SIZE,
                                   learning_rate=LR, no_cuda=True, optimizer_params={"fused": True} if fused else None)
        trainer = BaseTrainer(model, train_dataset=BaseDataset(x, torch.zeros(len(x))), training_config=config)
        start = time.perf_counter()
        trainer.train()
        return epochs * len(x) / (time.perf_counter() - start)
