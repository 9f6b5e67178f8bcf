"""Networks, selected by the ``net`` config group: an MLP, a small stride-2 convolutional pair, and
the same conv encoder with a spatial-broadcast decoder.

An :class:`Encoder` maps an input x (any shape) plus an optional condition vector to features;
a :class:`Decoder` maps a vector to distribution parameters with the shape of a target.
Conditions enter by concatenation: after flattening for the MLP, after the conv trunk for the
conv net, or — with ``condition_as_channels`` — as constant channels broadcast over the image.

The spatial-broadcast decoder (``kind: broadcast``; Watters et al. 2019, arXiv:1901.07017) tiles
its input vector over the image, appends two coordinate channels and applies stride-1
convolutions: every pixel is drawn by the same function of (vector, position), which composes
position with the other factors better than a decoder that must place pixels from a flat vector.
Its convolutions pad with zeros, where Watters et al. broadcast onto a canvas larger by the convolutions' reach
and use unpadded ones: near the border (within one pixel per 3x3 convolution) a pixel's function differs from
the interior's, but it is still one function of (vector, position) for every vector, since the padding sits at
the same place for every input; the padding only adds a signal of position beside the coordinate channels. Kept
because it does not matter on the data it was made for (experiments/attributes: 9 of the 12 held-out shape
combinations have ink in that band, up to 75 % of their ink, and CVAE-1 draws every one of them right).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cvaezoo.distributions import DiagonalGaussian, bounded_logvar
from cvaezoo.errors import UserError

ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}
KINDS = ("mlp", "conv", "broadcast")


@dataclass
class NetConfig:
    """Sizes of every network of a model (one config for all of them)."""

    kind: str = "mlp"
    hidden: Sequence[int] = (512, 256)
    channels: Sequence[int] = (32, 64)
    activation: str = "relu"
    condition_as_channels: bool = False
    #: side of every (transposed) convolution's kernel, odd; padded by kernel_size // 2, so that any odd size gives
    #: the same feature-map sizes (28 -> 14 -> 7 -> 4)
    kernel_size: int = 3

    @property
    def convolutional(self) -> bool:
        """Conv encoder and a conv (or spatial-broadcast) decoder for image-shaped data: every kind but the MLP."""
        return self.kind != "mlp"

    @classmethod
    def from_dict(cls, cfg: Mapping | NetConfig | None) -> NetConfig:
        if isinstance(cfg, NetConfig):
            return cfg
        cfg = dict(cfg or {})
        unknown = sorted(set(cfg) - set(cls.__dataclass_fields__))
        if unknown:
            raise UserError(f"unknown net config keys {unknown}; allowed: {sorted(cls.__dataclass_fields__)}")
        net = cls(**cfg)
        net.validate()
        return net

    def validate(self) -> None:
        if self.kind not in KINDS:
            raise UserError(f"net.kind must be one of {list(KINDS)}, got {self.kind!r}")
        if self.activation not in ACTIVATIONS:
            raise UserError(f"net.activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        if len(self.hidden) == 0 or any(int(h) <= 0 for h in self.hidden):
            raise UserError(f"net.hidden must be a non-empty list of positive sizes, got {list(self.hidden)}")
        if self.convolutional and (len(self.channels) == 0 or any(int(c) <= 0 for c in self.channels)):
            raise UserError(f"net.channels must be a non-empty list of positive sizes, got {list(self.channels)}")
        if isinstance(self.kernel_size, bool) or not isinstance(self.kernel_size, int) or self.kernel_size < 1 \
                or self.kernel_size % 2 == 0:
            raise UserError(f"net.kernel_size must be an odd positive integer, got {self.kernel_size!r}")


def mlp(in_dim: int, sizes: Sequence[int], activation: str, final_activation: bool = True) -> nn.Sequential:
    """Linear layers in_dim -> sizes[0] -> ... -> sizes[-1], activation between (and after, if asked)."""
    layers: list[nn.Module] = []
    for i, size in enumerate(sizes):
        layers.append(nn.Linear(in_dim, int(size)))
        if final_activation or i < len(sizes) - 1:
            layers.append(ACTIVATIONS[activation]())
        in_dim = int(size)
    return nn.Sequential(*layers)


def _conv_sizes(size: int, n_layers: int) -> list[int]:
    """Spatial sizes after each stride-2 convolution of an odd kernel k padded by k // 2 (ceil halving)."""
    sizes = [size]
    for _ in range(n_layers):
        sizes.append((sizes[-1] + 1) // 2)
    return sizes


def _is_image(shape: Sequence[int]) -> bool:
    return len(shape) == 3


class Encoder(nn.Module):
    """Features of x, conditioned on an optional vector c: (B, *x_shape), (B, cond_dim) -> (B, out_dim)."""

    def __init__(self, x_shape: Sequence[int], cond_dim: int, net: NetConfig):
        super().__init__()
        self.x_shape = tuple(int(s) for s in x_shape)
        self.cond_dim = int(cond_dim)
        self.use_conv = net.convolutional and _is_image(self.x_shape)
        self.cond_channels = self.use_conv and net.condition_as_channels and self.cond_dim > 0
        act = ACTIVATIONS[net.activation]
        if self.use_conv:
            in_ch, height, width = self.x_shape
            in_ch += self.cond_dim if self.cond_channels else 0
            convs: list[nn.Module] = []
            for ch in net.channels:
                convs += [nn.Conv2d(in_ch, int(ch), net.kernel_size, stride=2, padding=net.kernel_size // 2), act()]
                in_ch = int(ch)
            self.trunk = nn.Sequential(*convs, nn.Flatten())
            n_layers = len(net.channels)
            flat = in_ch * _conv_sizes(height, n_layers)[-1] * _conv_sizes(width, n_layers)[-1]
        else:
            self.trunk = nn.Flatten()
            flat = math.prod(self.x_shape)
        head_in = flat + (0 if self.cond_channels else self.cond_dim)
        self.head = mlp(head_in, net.hidden, net.activation)
        self.out_dim = int(net.hidden[-1])

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        if self.cond_channels:
            planes = c[:, :, None, None].expand(-1, -1, *x.shape[-2:])
            return self.head(self.trunk(torch.cat([x, planes], dim=1)))
        features = self.trunk(x)
        if self.cond_dim > 0:
            features = torch.cat([features, c], dim=-1)
        return self.head(features)


class Decoder(nn.Module):
    """Distribution parameters of a target from a vector: (B, in_dim) -> (B, P, H, W) or (B, P), P the
    likelihood's ``param_channels`` for the target's C channels (or D dimensions). The last
    ``constant_channels`` of them are learned constants, the same for every input and position (e.g. a
    likelihood's shared scale), not outputs of the network."""

    def __init__(self, in_dim: int, out_shape: Sequence[int], param_channels: int, net: NetConfig,
                 constant_channels: int = 0):
        super().__init__()
        self.out_shape = tuple(int(s) for s in out_shape)
        self.constants = nn.Parameter(torch.zeros(constant_channels)) if constant_channels else None
        self.params_shape = (param_channels - constant_channels, *self.out_shape[1:])
        self.use_conv = net.convolutional and _is_image(self.out_shape)
        self.broadcast = self.use_conv and net.kind == "broadcast"
        hidden = list(reversed(list(net.hidden)))
        act = ACTIVATIONS[net.activation]
        if self.broadcast:
            height, width = self.out_shape[1:]
            rows, cols = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
            self.register_buffer("coordinates", torch.stack([rows, cols])[None], persistent=False)
            convs: list[nn.Module] = []
            c_in = in_dim + 2
            for ch in reversed(list(net.channels)):
                convs += [nn.Conv2d(c_in, int(ch), net.kernel_size, padding=net.kernel_size // 2), act()]
                c_in = int(ch)
            self.body = nn.Sequential(*convs, nn.Conv2d(c_in, self.params_shape[0], net.kernel_size, padding=net.kernel_size // 2))
        elif self.use_conv:
            channels = [int(c) for c in reversed(list(net.channels))]
            heights = _conv_sizes(self.out_shape[1], len(channels))[::-1]
            widths = _conv_sizes(self.out_shape[2], len(channels))[::-1]
            self.seed_shape = (channels[0], heights[0], widths[0])
            self.body = nn.Sequential(mlp(in_dim, hidden, net.activation), nn.Linear(hidden[-1], math.prod(self.seed_shape)), act())
            deconvs: list[nn.Module] = []
            outs = channels[1:] + [self.params_shape[0]]
            for i, (c_in, c_out) in enumerate(zip(channels, outs)):
                # output size 2*in - 1 + output_padding (any odd kernel k padded by k // 2) must equal the encoder's
                # size at this depth
                pad_h = heights[i + 1] - 2 * heights[i] + 1
                pad_w = widths[i + 1] - 2 * widths[i] + 1
                deconvs.append(nn.ConvTranspose2d(c_in, c_out, net.kernel_size, stride=2, padding=net.kernel_size // 2,
                                                  output_padding=(pad_h, pad_w)))
                if i < len(channels) - 1:
                    deconvs.append(act())
            self.upsample = nn.Sequential(*deconvs)
        else:
            self.body = nn.Sequential(mlp(in_dim, hidden, net.activation), nn.Linear(hidden[-1], math.prod(self.params_shape)))

    def forward(self, h: Tensor) -> Tensor:
        out = self._network_params(h)
        if self.constants is None:
            return out
        constants = self.constants.view(1, -1, *[1] * (out.dim() - 2)).to(out.dtype)
        return torch.cat([out, constants.expand(len(out), -1, *out.shape[2:])], dim=1)

    def _network_params(self, h: Tensor) -> Tensor:
        if self.broadcast:
            tiled = h[:, :, None, None].expand(-1, -1, *self.out_shape[1:])
            return self.body(torch.cat([tiled, self.coordinates.expand(len(h), -1, -1, -1)], dim=1))
        out = self.body(h)
        if self.use_conv:
            return self.upsample(out.view(-1, *self.seed_shape))
        return out.view(-1, *self.params_shape)


class GaussianHead(nn.Module):
    """A diagonal Gaussian whose mean and (bounded) log-variance are linear in some features."""

    def __init__(self, features: nn.Module, feature_dim: int, latent_dim: int):
        super().__init__()
        self.features = features
        self.to_params = nn.Linear(feature_dim, 2 * latent_dim)

    def forward(self, *inputs: Tensor) -> DiagonalGaussian:
        mean, raw_logvar = self.to_params(self.features(*inputs)).chunk(2, dim=-1)
        return DiagonalGaussian(mean, bounded_logvar(raw_logvar))
