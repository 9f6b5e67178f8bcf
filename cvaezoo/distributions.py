"""Distributions used by every model: a diagonal Gaussian over z and the likelihoods p(target | ...).

All log-densities are summed over data dimensions and returned per example, in nats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from cvaezoo.errors import UserError

LOG_2PI = math.log(2.0 * math.pi)
# Log-variances (of the latent's Gaussians and the Gaussian likelihood) are squashed into this range so that
# extreme inputs cannot overflow exp(). What the floor costs: a posterior std of at least e^-6 = 0.0025 prior
# stds (KL to N(0, I) at the floor, mean 0: 5.5 nats per latent dimension, so a latent dimension can carry
# log(1/0.0025) = 6 nats before the floor binds; the recorded models sit far above it); a Gaussian likelihood
# density of at most N(0; 0, e^-12) = e^5.08 per dimension, i.e. a std >= 0.0025 = 0.64 of an 8-bit bin: a
# density, not a pmf, so it has no bits/dim to lose (pixel_likelihood never picks it for 8-bit data).
LOGVAR_MIN, LOGVAR_MAX = -12.0, 8.0
# The discretised logistics' log-scales are clamped into this range (PixelCNN++ clamps at -7 on [-1, 1]). At the
# floor s = 1.2e-4 is 1/16 of a bin's half-width (1/510), so a value the model is sure of costs at most
# -log2(sigmoid(15.9) - sigmoid(-15.9)) = 3.6e-7 bits, interior values included; a clamp, not a tanh, so the
# gradient of log s is 1 all the way down to the floor.
LOG_SCALE_MIN, LOG_SCALE_MAX = -9.0, 7.0


def bounded_log_scale(raw: Tensor) -> Tensor:
    """A discretised logistic's log-scale from an unconstrained network output: clamped to [LOG_SCALE_MIN, LOG_SCALE_MAX]."""
    return raw.clamp(LOG_SCALE_MIN, LOG_SCALE_MAX)


def bounded_logvar(raw: Tensor) -> Tensor:
    """Map an unconstrained network output smoothly into [LOGVAR_MIN, LOGVAR_MAX]."""
    half_range = (LOGVAR_MAX - LOGVAR_MIN) / 2.0
    centre = (LOGVAR_MAX + LOGVAR_MIN) / 2.0
    return centre + half_range * torch.tanh((raw - centre) / half_range)


@dataclass
class DiagonalGaussian:
    """N(mean, diag(exp(logvar))) over the last dimension; leading dimensions are batch."""

    mean: Tensor
    logvar: Tensor

    @classmethod
    def standard(cls, like: Tensor) -> DiagonalGaussian:
        """N(0, I) with the shape of ``like``; it has no parameters."""
        zeros = torch.zeros_like(like)
        return cls(zeros, zeros)

    @property
    def std(self) -> Tensor:
        return torch.exp(0.5 * self.logvar)

    def rsample(self, n_samples: int = 1, temperature: float = 1.0, eps: Tensor | None = None) -> Tensor:
        """Reparameterised samples z = mean + temperature * std * eps, shape (n_samples, *batch, D).

        ``eps`` (standard-normal noise of that shape) may be given to share noise between calls.
        """
        if eps is None:
            eps = torch.randn((n_samples, *self.mean.shape), dtype=self.mean.dtype, device=self.mean.device)
        return self.mean + temperature * self.std * eps

    def log_prob(self, z: Tensor) -> Tensor:
        """log N(z; mean, var) summed over the last dimension; z may carry extra leading sample dims."""
        return -0.5 * (LOG_2PI + self.logvar + (z - self.mean) ** 2 / torch.exp(self.logvar)).sum(-1)

    def kl(self, prior: DiagonalGaussian) -> Tensor:
        """Closed-form KL(self || prior) between diagonal Gaussians, summed over the last dimension.

        KL = 1/2 * sum( log var_p - log var_q + (var_q + (mu_q - mu_p)^2) / var_p - 1 )
        """
        var_ratio = torch.exp(self.logvar - prior.logvar)
        mahalanobis = (self.mean - prior.mean) ** 2 / torch.exp(prior.logvar)
        return 0.5 * (var_ratio + mahalanobis - 1.0 - (self.logvar - prior.logvar)).sum(-1)



class Likelihood:
    """p(target | params) for a network output ``params`` of shape (B, param_channels(C), ...)."""

    params_per_dim: int = 1
    #: a probability mass function over 8-bit values: -log p in bits per dimension is meaningful
    reports_bits_per_dim: bool = False
    #: the oldest checkpoint format (cvaezoo.checkpoint_files.CHECKPOINT_FORMAT) whose weights mean this likelihood
    oldest_checkpoint_format: int = 1
    #: the weight of the uniform outlier that ``model.pixel_outlier_weight=null`` mixes into each element of a model
    #: of pixels (:class:`WithOutliers`); chosen where experiments/noise measured it, else 0.01
    default_outlier_weight: float = 0.01

    def param_channels(self, channels: int) -> int:
        """How many parameter channels the decoder outputs for a target of ``channels`` channels."""
        return self.params_per_dim * channels

    def constant_channels(self, channels: int) -> int:
        """How many of the last parameter channels are learned constants (the same for every input and pixel)."""
        return 0

    def log_prob(self, params: Tensor, target: Tensor) -> Tensor:
        """log p(target | params) per example (B,): the sum of :meth:`log_prob_elements`."""
        return _sum_except_batch(self.log_prob_elements(params, target))

    def log_prob_elements(self, params: Tensor, target: Tensor) -> Tensor:  # pragma: no cover - interface
        """log p of each independent element of the target (a pixel's channel, or a whole pixel where channels are
        coupled), (B, ...)."""
        raise NotImplementedError

    def uniform_log_prob(self, target: Tensor) -> float | None:
        """log of the uniform pmf (or density on [0, 1]) over one element's values; None where there is none."""
        return None

    def mean(self, params: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def sample(self, params: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError


def _sum_except_batch(t: Tensor) -> Tensor:
    return t.flatten(start_dim=1).sum(-1)


class Bernoulli(Likelihood):
    """Independent Bernoulli per dimension; params are logits. A distribution only over binary targets:
    on grey values in (0, 1) its log_prob is an unnormalised cross-entropy (models refuse that pairing
    unless ``model.allow_grey_bernoulli=true``)."""

    def log_prob_elements(self, params: Tensor, target: Tensor) -> Tensor:
        return -F.binary_cross_entropy_with_logits(params, target, reduction="none")

    def uniform_log_prob(self, target: Tensor) -> float:
        return -math.log(2.0)

    def mean(self, params: Tensor) -> Tensor:
        return torch.sigmoid(params)

    def sample(self, params: Tensor) -> Tensor:
        return torch.bernoulli(torch.sigmoid(params))


class Gaussian(Likelihood):
    """Independent Gaussian per dimension, with a learned (per-dimension output) or fixed variance; its mean is
    the network's output, or with ``sigmoid_mean`` that output's sigmoid, in (0, 1) like a pixel (Li et al. 2019's
    "l2" likelihood is ``learn_variance=False, fixed_std=0.5 ** 0.5, sigmoid_mean=True``: -sum (x - mean)^2 plus a
    constant)."""

    def __init__(self, learn_variance: bool = True, fixed_std: float = 0.1, sigmoid_mean: bool = False):
        if fixed_std <= 0:
            raise UserError(f"likelihood fixed_std must be > 0, got {fixed_std}")
        self.learn_variance = learn_variance
        self.params_per_dim = 2 if learn_variance else 1
        self.fixed_logvar = 2.0 * math.log(fixed_std)
        self.sigmoid_mean = sigmoid_mean

    def _split(self, params: Tensor) -> tuple[Tensor, Tensor]:
        if self.learn_variance:
            mean, raw_logvar = params.chunk(2, dim=1)
            logvar = bounded_logvar(raw_logvar)
        else:
            mean, logvar = params, torch.full_like(params, self.fixed_logvar)
        return (torch.sigmoid(mean) if self.sigmoid_mean else mean), logvar

    def log_prob_elements(self, params: Tensor, target: Tensor) -> Tensor:
        mean, logvar = self._split(params)
        return -0.5 * (LOG_2PI + logvar + (target - mean) ** 2 / torch.exp(logvar))

    def uniform_log_prob(self, target: Tensor) -> float:
        return 0.0  # the uniform density on [0, 1]

    def mean(self, params: Tensor) -> Tensor:
        return self._split(params)[0]

    def sample(self, params: Tensor) -> Tensor:
        mean, logvar = self._split(params)
        return mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)


class ContinuousBernoulli(Likelihood):
    """The continuous Bernoulli (Loaiza-Ganem & Cunningham, 2019): a normalised density on [0, 1] per
    dimension with logits as params; the proper counterpart of the Bernoulli for grey pixels."""

    @staticmethod
    def _distribution(params: Tensor) -> torch.distributions.ContinuousBernoulli:
        return torch.distributions.ContinuousBernoulli(logits=params, validate_args=False)

    def log_prob_elements(self, params: Tensor, target: Tensor) -> Tensor:
        return self._distribution(params).log_prob(target)

    def uniform_log_prob(self, target: Tensor) -> float:
        return 0.0  # the uniform density on [0, 1]

    def mean(self, params: Tensor) -> Tensor:
        return self._distribution(params).mean

    def sample(self, params: Tensor) -> Tensor:
        return self._distribution(params).sample()


HALF_BIN = 0.5 / 255.0  # half the width of an 8-bit value's bin on [0, 1]


def discretized_logistic_log_mass(target: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
    """log P(target) elementwise for a logistic(mean, exp(log_scale)) discretised to the 256 values k/255:
    F((x + 1/510 - mu)/s) - F((x - 1/510 - mu)/s), the end bins taking the tails."""
    inv_scale = torch.exp(-log_scale)
    centred = target - mean
    upper, lower = inv_scale * (centred + HALF_BIN), inv_scale * (centred - HALF_BIN)
    log_cdf_upper = upper - F.softplus(upper)  # log F(upper), for the bin at 0
    log_survival_lower = -F.softplus(lower)  # log (1 - F(lower)), for the bin at 1
    mass = torch.sigmoid(upper) - torch.sigmoid(lower)
    middle = inv_scale * centred  # where the mass underflows, the density times the bin width
    log_density = middle - log_scale - 2.0 * F.softplus(middle) - math.log(255.0)
    inner = torch.where(mass > 1e-5, torch.log(mass.clamp_min(1e-12)), log_density)
    return torch.where(target < HALF_BIN, log_cdf_upper, torch.where(target > 1 - HALF_BIN, log_survival_lower, inner))


def logistic_noise(like: Tensor) -> Tensor:
    """Standard logistic draws of ``like``'s shape: log u - log(1 - u), u uniform."""
    u = torch.rand_like(like).clamp(1e-6, 1 - 1e-6)
    return torch.log(u) - torch.log1p(-u)


def round_to_8_bits(x: Tensor) -> Tensor:
    return torch.round(x.clamp(0.0, 1.0) * 255.0) / 255.0


class DiscretizedLogistic(Likelihood):
    """A logistic per dimension discretised to the 256 values k/255 of 8-bit images (as in PixelCNN++):
    P(x) = F((x + 1/510 - mu)/s) - F((x - 1/510 - mu)/s), with the end bins taking the tails, so it is a
    probability mass function and -log P in bits per dimension is comparable across papers. log s is clamped to
    [LOG_SCALE_MIN, LOG_SCALE_MAX] (a certain value costs <= 3.6e-7 bits).

    ``scale``: "pixel", a log-scale per pixel and channel output by the decoder beside the location (PixelCNN++);
    or "shared", one learned log-scale per channel for every pixel and input (a calibrated decoder, as the shared
    variance of Rybkin et al. 2021's sigma-VAE). A per-pixel scale can explain a pixel it has not learned yet as
    noise, and on images with a sparse foreground it does (experiments/colour_shapes: the ink stays at the ground's
    value while its scale grows); a shared scale gives every pixel's location the same gradient per unit of error."""

    params_per_dim = 2
    reports_bits_per_dim = True
    oldest_checkpoint_format = 2  # the log-scale became a clamp (#27)
    #: on grey MNIST Bayes rule keeps 0 % of its clean accuracy under +-0.05 noise without an outlier, 77-88 % with
    #: 0.1 and 93-97 % with 0.3 (experiments/noise, CVAE-1/2/4); 0.01 kept 40 % in a one-seed trial
    default_outlier_weight = 0.3
    SCALES = ("pixel", "shared")
    #: the shared log-scale is this times its parameter, so that Adam (steps of about lr) moves it 5x faster: from
    #: s = 1 to the floor in about 1 800 steps at lr 1e-3, instead of 9 000
    SHARED_SCALE_GAIN = 5.0

    def __init__(self, scale: str = "pixel"):
        if scale not in self.SCALES:
            raise UserError(f"likelihood scale must be one of {list(self.SCALES)}, got {scale!r}")
        self.scale = scale

    def constant_channels(self, channels: int) -> int:
        return channels if self.scale == "shared" else 0

    def _split(self, params: Tensor) -> tuple[Tensor, Tensor]:
        mean, raw_log_scale = params.chunk(2, dim=1)
        if self.scale == "shared":
            raw_log_scale = self.SHARED_SCALE_GAIN * raw_log_scale
        return mean, bounded_log_scale(raw_log_scale)

    def log_prob_elements(self, params: Tensor, target: Tensor) -> Tensor:
        return discretized_logistic_log_mass(target, *self._split(params))

    def uniform_log_prob(self, target: Tensor) -> float:
        return -math.log(256.0)

    def mean(self, params: Tensor) -> Tensor:
        return self._split(params)[0].clamp(0.0, 1.0)

    def sample(self, params: Tensor) -> Tensor:
        mean, log_scale = self._split(params)
        return round_to_8_bits(mean + torch.exp(log_scale) * logistic_noise(mean))


class DiscretizedLogisticMixture(Likelihood):
    """PixelCNN++'s output distribution (Salimans et al., 2017) on the values k/255 of 8-bit images: per pixel a
    mixture of ``components`` discretised logistics over its C channels, the channels coupled within a component
    (channel c's location is mu_c + sum_{j<c} a_cj x_j, a in (-1, 1)), so that P(x) = sum_k pi_k prod_c
    P_k(x_c | x_<c) is a probability mass function over the 256^C values of a pixel.

    log s is clamped to [LOG_SCALE_MIN, LOG_SCALE_MAX] as in the single logistic (PixelCNN++'s -7 on [-1, 1] would
    cost 0.04 bits on a certain pixel).
    Network output per pixel: K mixture logits, then K x C locations, K x C log-scales, K x C(C-1)/2 couplings.
    """

    reports_bits_per_dim = True
    default_outlier_weight = 0.3  # as the single logistic's (not measured for the mixture)

    def __init__(self, components: int = 5):
        if components < 1:
            raise UserError(f"likelihood components must be >= 1, got {components}")
        self.components = components

    def param_channels(self, channels: int) -> int:
        return self.components * (1 + 2 * channels + channels * (channels - 1) // 2)

    def _split(self, params: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(mixture log-weights (B, K, ...), locations (B, K, C, ...), log-scales (B, K, C, ...),
        couplings (B, K, C(C-1)/2, ...))."""
        k = self.components
        channels = _channels_from_params(params.shape[1] // k)
        rest = params.shape[2:]
        logits, means, log_scales, couplings = params.split([k, k * channels, k * channels,
                                                              k * channels * (channels - 1) // 2], dim=1)
        log_scales = bounded_log_scale(log_scales)
        return (F.log_softmax(logits, dim=1), means.reshape(-1, k, channels, *rest),
                log_scales.reshape(-1, k, channels, *rest), torch.tanh(couplings).reshape(-1, k, channels * (channels - 1) // 2, *rest))

    @staticmethod
    def _location(means: Tensor, couplings: Tensor, channel: int, x: Tensor) -> Tensor:
        """Channel ``channel``'s location in every component, (B, K, ...): its own plus each earlier channel's value in
        ``x`` (B, C, ...) times their coupling (pairs in the order (1, 0), (2, 0), (2, 1), ...)."""
        first_pair = channel * (channel - 1) // 2
        location = means[:, :, channel]
        for j in range(channel):
            location = location + couplings[:, :, first_pair + j] * x[:, None, j]
        return location

    def log_prob_elements(self, params: Tensor, target: Tensor) -> Tensor:
        """log P of each pixel, its C channels jointly, (B, H, W)."""
        log_weights, means, log_scales, couplings = self._split(params)
        locations = torch.stack([self._location(means, couplings, c, target) for c in range(target.shape[1])], dim=2)
        per_component = discretized_logistic_log_mass(target[:, None], locations, log_scales).sum(2)  # (B, K, ...)
        return torch.logsumexp(log_weights + per_component, dim=1)

    def uniform_log_prob(self, target: Tensor) -> float:
        return -target.shape[1] * math.log(256.0)  # over the 256^C values of a pixel

    def _decode(self, params: Tensor, noise: bool) -> Tensor:
        """Channel by channel, each coupled to the values already decoded: drawn from a component drawn per pixel
        (``noise``), or the location of the most probable component."""
        log_weights, means, log_scales, couplings = self._split(params)
        if noise:
            chosen = torch.distributions.Categorical(logits=log_weights.movedim(1, -1)).sample()
        else:
            chosen = log_weights.argmax(dim=1)

        def pick(t: Tensor) -> Tensor:  # the chosen component's entry, (B, K, ...) -> (B, ...)
            return t.gather(1, chosen[:, None]).squeeze(1)

        values = means.new_zeros(means.shape[:1] + means.shape[2:])  # (B, C, ...)
        for c in range(values.shape[1]):
            location = pick(self._location(means, couplings, c, values))
            if noise:
                values[:, c] = round_to_8_bits(location + torch.exp(pick(log_scales[:, :, c])) * logistic_noise(location))
            else:
                values[:, c] = location.clamp(0.0, 1.0)
        return values

    def mean(self, params: Tensor) -> Tensor:
        """The location of each pixel's most probable component (channels coupled through these locations)."""
        return self._decode(params, noise=False)

    def sample(self, params: Tensor) -> Tensor:
        return self._decode(params, noise=True)


def _channels_from_params(per_component: int) -> int:
    """C from 1 + 2C + C(C-1)/2 parameters per component."""
    channels = 1
    while 1 + 2 * channels + channels * (channels - 1) // 2 < per_component:
        channels += 1
    if 1 + 2 * channels + channels * (channels - 1) // 2 != per_component:
        raise ValueError(f"{per_component} parameters per mixture component fit no number of channels")
    return channels


class Categorical(Likelihood):
    """One categorical over classes; params are logits (B, C); targets are class indices (B,)."""

    def log_prob(self, params: Tensor, target: Tensor) -> Tensor:
        return -F.cross_entropy(params, target, reduction="none")

    def mean(self, params: Tensor) -> Tensor:
        return torch.softmax(params, dim=-1)

    def sample(self, params: Tensor) -> Tensor:
        return torch.distributions.Categorical(logits=params).sample()


class WithOutliers(Likelihood):
    """(1 - w) p(x_i | params) + w u(x_i) for each element x_i: the likelihood ``inner`` with a weight ``w`` of the
    uniform distribution u over an element's values mixed in (1/2 for a binary pixel, 1/256 for an 8-bit value, the
    uniform density on [0, 1] for a grey one), a corruption model. Still a proper likelihood (a pmf where ``inner``
    is one), it bounds what one element can cost: at most -log(w u), where ``inner`` alone costs without limit a
    value it was sure could not occur (a background pixel one grey level off black). Where it was right, it costs at
    most -log(1 - w) more per element. ``mean`` and ``sample`` are the inner's: the clean component, what the model
    learned, not the corruption it allows."""

    def __init__(self, inner: Likelihood, weight: float):
        if not 0.0 < weight < 1.0:
            raise UserError(f"model.pixel_outlier_weight must be in [0, 1), got {weight}")
        self.inner, self.weight = inner, weight

    @property
    def reports_bits_per_dim(self) -> bool:  # a pmf exactly where the inner likelihood is one
        return self.inner.reports_bits_per_dim

    @property
    def oldest_checkpoint_format(self) -> int:
        return self.inner.oldest_checkpoint_format

    def param_channels(self, channels: int) -> int:
        return self.inner.param_channels(channels)

    def constant_channels(self, channels: int) -> int:
        return self.inner.constant_channels(channels)

    def log_prob_elements(self, params: Tensor, target: Tensor) -> Tensor:
        inner = self.inner.log_prob_elements(params, target)
        uniform = self.inner.uniform_log_prob(target) + math.log(self.weight)
        return torch.logaddexp(inner + math.log1p(-self.weight), torch.full_like(inner, uniform))

    def uniform_log_prob(self, target: Tensor) -> float | None:
        return self.inner.uniform_log_prob(target)

    def mean(self, params: Tensor) -> Tensor:
        return self.inner.mean(params)

    def sample(self, params: Tensor) -> Tensor:
        return self.inner.sample(params)


LIKELIHOODS = {"bernoulli": Bernoulli, "continuous_bernoulli": ContinuousBernoulli, "discretized_logistic": DiscretizedLogistic,
               "discretized_logistic_mixture": DiscretizedLogisticMixture, "gaussian": Gaussian, "categorical": Categorical}


def pixel_likelihood(pixel_levels: int | None) -> str:
    """The default likelihood for pixels with this many distinct values (None: unknown, taken as binary)."""
    if pixel_levels in (None, 2):
        return "bernoulli"
    return "discretized_logistic" if pixel_levels == 256 else "continuous_bernoulli"


def build_likelihood(name: str, **kwargs) -> Likelihood:
    if name not in LIKELIHOODS:
        raise UserError(f"unknown likelihood {name!r}; choose one of {sorted(LIKELIHOODS)}")
    return LIKELIHOODS[name](**kwargs)


def with_outliers(likelihood: Likelihood, weight: float | None) -> Likelihood:
    """``likelihood`` with a uniform corruption of weight ``weight`` (None: the likelihood's
    ``default_outlier_weight``) mixed into each element (:class:`WithOutliers`); itself for a weight of 0."""
    weight = likelihood.default_outlier_weight if weight is None else weight
    if weight == 0.0:
        return likelihood
    if likelihood.uniform_log_prob(torch.zeros(1, 1)) is None:
        raise UserError(f"{type(likelihood).__name__} has no uniform distribution to mix in (uniform_log_prob): "
                        "set model.pixel_outlier_weight=0, or give it log_prob_elements and uniform_log_prob")
    return WithOutliers(likelihood, weight)
