"""Why the colour was not learned: the study's conv decoder alone, trained to map the attribute vector y of the
colour shapes to the image (no z, no encoder, no KL), under several pixel likelihoods. If a variant cannot paint
the ink here, no CVAE built on it can.

    python experiments/colour_shapes/decoder_alone.py VARIANT [--steps 3200] [--net conv] > experiments/colour_shapes/decoder_alone/VARIANT.txt

Variants: gaussian_fixed (std 0.05: mean squared error), logistic_pixel (the discretised logistic, a log-scale per
pixel from the decoder: the 8-bit default), logistic_fixed (log s held at -3 everywhere), logistic_floor4 (per
pixel, but log s >= -4), logistic_shared (one learned log-scale per channel: scale=shared), mixture_pixel (the
mixture of 5, per-pixel scales). The study's conv decoder (net=conv: channels 32, 64, hidden 256) unless --net. Adam 1e-3, batches of 64 from the 2 000 training images, seed 0. Printed every
steps/8: the training loss per dimension (nats), and on the test images the mean absolute error of the decoded
image (mean()) on the ink pixels and the largest channel error on the ground pixels, in 8-bit levels (of 255), and
the mean log-scale on ink and ground pixels.
"""

from __future__ import annotations

import argparse
import time

import torch

from cvaezoo.data.shapes import BACKGROUND, Shapes
from cvaezoo.distributions import build_likelihood, discretized_logistic_log_mass
from cvaezoo.nets import Decoder, NetConfig

VARIANTS = {  # name: (likelihood, its kwargs, log-scale bounds (low, high) or None)
    "gaussian_fixed": ("gaussian", {"learn_variance": False, "fixed_std": 0.05}, None),
    "logistic_pixel": ("discretized_logistic", {}, None),
    "logistic_fixed": ("discretized_logistic", {}, (-3.0, -3.0)),
    "logistic_floor4": ("discretized_logistic", {}, (-4.0, 7.0)),
    "logistic_shared": ("discretized_logistic", {"scale": "shared"}, None),
    "mixture_pixel": ("discretized_logistic_mixture", {}, None),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant", choices=sorted(VARIANTS))
    parser.add_argument("--steps", type=int, default=3200)
    parser.add_argument("--net", choices=("conv", "broadcast"), default="conv",
                        help="the study's conv decoder, or the spatial-broadcast decoder (net=broadcast)")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    name, kwargs, bounds = VARIANTS[args.variant]
    likelihood = build_likelihood(name, **kwargs)
    splits = Shapes(colour=True).load_splits()
    (x, y), (x_test, y_test) = splits["train"], splits["test"]
    decoder = Decoder(y.shape[1], x.shape[1:], likelihood.param_channels(3), NetConfig(kind=args.net, channels=[32, 64], hidden=[256]),
                      constant_channels=likelihood.constant_channels(3))
    optimiser = torch.optim.Adam(decoder.parameters(), lr=1e-3)
    ground = torch.tensor(BACKGROUND, dtype=torch.float32).view(1, 3, 1, 1) / 255

    def log_prob(params: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if bounds is None:
            return likelihood.log_prob(params, target)
        mean, raw_log_scale = params.chunk(2, dim=1)
        return discretized_logistic_log_mass(target, mean, raw_log_scale.clamp(*bounds)).flatten(1).sum(1)

    @torch.no_grad()
    def report(step: int, loss: float, start: float) -> None:
        params = decoder(y_test)
        decoded = likelihood.mean(params)
        ink = ((x_test - ground).abs().sum(1, keepdim=True) > 1e-3).expand_as(x_test)
        ink_error = (decoded - x_test).abs()[ink].mean() * 255
        ground_error = (decoded - x_test).abs().amax(1)[~ink[:, 0]].mean() * 255
        scales = ""
        if name == "discretized_logistic":
            log_scale = likelihood._split(params)[1] if bounds is None else params[:, 3:].clamp(*bounds)
            scales = f"  log s ink {log_scale[ink].mean():6.2f} ground {log_scale[~ink].mean():6.2f}"
        print(f"step {step:5d}  loss/dim {loss:7.3f}  ink error {ink_error:6.1f}  ground error {ground_error:5.1f}{scales}"
              f"  ({time.time() - start:.0f} s)", flush=True)

    start = time.time()
    for step in range(args.steps + 1):
        batch = torch.randint(0, len(x), (64,))
        loss = -log_prob(decoder(y[batch]), x[batch]).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % (args.steps // 8) == 0:
            report(step, loss.item() / x[0].numel(), start)


if __name__ == "__main__":
    main()
