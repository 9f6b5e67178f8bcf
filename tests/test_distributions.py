import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from cvaezoo.distributions import (
    LOGVAR_MAX,
    LOGVAR_MIN,
    Bernoulli,
    Categorical,
    ContinuousBernoulli,
    DiagonalGaussian,
    DiscretizedLogistic,
    Gaussian,
    bounded_log_scale,
    bounded_logvar,
    build_likelihood,
    pixel_likelihood,
)


def random_gaussian(batch: int, dim: int, scale: float = 1.0) -> DiagonalGaussian:
    return DiagonalGaussian(scale * torch.randn(batch, dim), torch.randn(batch, dim))


def test_closed_form_kl_matches_monte_carlo_for_non_standard_prior():
    q, p = random_gaussian(4, 3), random_gaussian(4, 3, scale=2.0)
    z = q.rsample(200_000)
    monte_carlo = (q.log_prob(z) - p.log_prob(z)).mean(0)
    closed = q.kl(p)
    assert torch.allclose(closed, monte_carlo, rtol=0.03, atol=0.03), (closed, monte_carlo)


def test_kl_matches_torch_distributions_and_is_zero_for_equal_gaussians():
    q, p = random_gaussian(5, 7), random_gaussian(5, 7)
    reference = kl_divergence(Normal(q.mean, q.std), Normal(p.mean, p.std)).sum(-1)
    assert torch.allclose(q.kl(p), reference, atol=1e-5)
    assert torch.allclose(q.kl(q), torch.zeros(5), atol=1e-6)
    assert (q.kl(p) > 0).all()


def test_log_prob_matches_torch_normal():
    q = random_gaussian(3, 4)
    z = torch.randn(6, 3, 4)
    assert torch.allclose(q.log_prob(z), Normal(q.mean, q.std).log_prob(z).sum(-1), atol=1e-5)


def test_rsample_is_reparameterised_and_uses_given_noise():
    mean, logvar = torch.zeros(2, 3, requires_grad=True), torch.zeros(2, 3, requires_grad=True)
    q = DiagonalGaussian(mean, logvar)
    eps = torch.randn(5, 2, 3)
    z = q.rsample(5, eps=eps, temperature=0.5)
    assert torch.allclose(z, 0.5 * eps)
    z.sum().backward()
    assert mean.grad is not None and logvar.grad is not None
    assert q.rsample().shape == (1, 2, 3)  # one draw by default, with a leading sample axis
    double = DiagonalGaussian(torch.zeros(2, 3, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.float64))
    torch.manual_seed(0)
    drawn = double.rsample(4)
    torch.manual_seed(0)
    assert torch.equal(drawn, torch.randn(4, 2, 3, dtype=torch.float64))  # noise drawn in the parameters' precision


def test_standard_gaussian_is_n01():
    prior = DiagonalGaussian.standard(torch.ones(2, 3))
    assert torch.equal(prior.mean, torch.zeros(2, 3)) and torch.equal(prior.std, torch.ones(2, 3))


def test_bounded_logvar_stays_in_range_and_is_near_identity_in_the_middle():
    raw = torch.tensor([-1e6, -2.0, 0.0, 1.0, 1e6])
    out = bounded_logvar(raw)
    assert out.min() >= LOGVAR_MIN and out.max() <= LOGVAR_MAX
    assert torch.allclose(bounded_logvar(torch.tensor([-2.0])), torch.tensor([-2.0]), atol=1e-6)
    assert abs(float(bounded_logvar(torch.tensor(0.0))) - 0.0) < 0.05


def test_bernoulli_log_prob_matches_torch():
    logits, target = torch.randn(3, 1, 4, 4), torch.randint(0, 2, (3, 1, 4, 4)).float()
    expected = torch.distributions.Bernoulli(logits=logits).log_prob(target).flatten(1).sum(-1)
    assert torch.allclose(Bernoulli().log_prob(logits, target), expected, atol=1e-5)


def test_gaussian_likelihood_learned_and_fixed_variance():
    target = torch.randn(3, 2, 5)
    params = torch.randn(3, 4, 5)  # mean channels then log-variance channels
    learned = Gaussian(learn_variance=True)
    mean, raw = params.chunk(2, dim=1)
    expected = Normal(mean, torch.exp(0.5 * bounded_logvar(raw))).log_prob(target).flatten(1).sum(-1)
    assert torch.allclose(learned.log_prob(params, target), expected, atol=1e-4)
    fixed = Gaussian(learn_variance=False, fixed_std=0.3)
    assert fixed.params_per_dim == 1
    expected = Normal(mean, 0.3).log_prob(target).flatten(1).sum(-1)
    assert torch.allclose(fixed.log_prob(mean, target), expected, atol=1e-4)


def test_categorical_log_prob_and_mean():
    logits, target = torch.randn(6, 10), torch.randint(0, 10, (6,))
    expected = torch.log_softmax(logits, -1).gather(1, target[:, None]).squeeze(1)
    likelihood = Categorical()
    assert torch.allclose(likelihood.log_prob(logits, target), expected, atol=1e-6)
    assert torch.allclose(likelihood.mean(logits).sum(-1), torch.ones(6))


def test_unknown_likelihood_names_the_choices():
    with pytest.raises(ValueError, match="bernoulli"):
        build_likelihood("poisson")
    with pytest.raises(ValueError, match="fixed_std"):
        Gaussian(learn_variance=False, fixed_std=0.0)


def test_log_prob_of_extreme_logvar_is_finite():
    q = DiagonalGaussian(torch.zeros(1, 2), bounded_logvar(torch.tensor([[1e9, -1e9]])))
    assert math.isfinite(float(q.log_prob(torch.ones(1, 2)).sum()))
    assert math.isfinite(float(q.kl(DiagonalGaussian.standard(q.mean)).sum()))


def test_what_the_variance_floor_costs_the_latent_and_the_gaussian_likelihood():
    """The floor LOGVAR_MIN is reached (not only approached); at it, a posterior's KL to N(0, 1) is the closed form
    1/2 (e^-12 - 1 + 12) = 5.5 nats per dimension (what a deterministic code costs), and a Gaussian likelihood's
    log-density of a value on its mean is at most -1/2 (log 2 pi - 12) = 5.08 nats per dimension."""
    floor = bounded_logvar(torch.tensor([-1e9], dtype=torch.double))
    assert float(floor) == LOGVAR_MIN
    sharp = DiagonalGaussian(torch.zeros(1, 3, dtype=torch.double), floor.expand(1, 3))
    per_dim = 0.5 * (math.exp(LOGVAR_MIN) - 1 - LOGVAR_MIN)
    assert float(sharp.kl(DiagonalGaussian.standard(sharp.mean))) == pytest.approx(3 * per_dim, rel=1e-9)
    params = torch.tensor([0.3, -1e9], dtype=torch.double).view(1, 2, 1, 1)
    best = float(Gaussian().log_prob(params, torch.full((1, 1, 1, 1), 0.3, dtype=torch.double)))
    assert best == pytest.approx(-0.5 * (math.log(2 * math.pi) + LOGVAR_MIN), rel=1e-9)


def _one_pixel_params(values: list[float], per_dim: int) -> torch.Tensor:
    """Params for B single-pixel images (B, per_dim * 1, 1, 1) from rows of per_dim numbers."""
    return torch.tensor(values, dtype=torch.double).view(-1, per_dim, 1, 1)


@pytest.mark.parametrize("logit", [-4.0, -0.5, 0.0, 1e-4, 2.0, 6.0])
def test_continuous_bernoulli_is_a_density_on_the_unit_interval(logit):
    """It integrates to 1 over [0, 1]; the Bernoulli's cross-entropy on grey values does not (the defect it fixes)."""
    grid = torch.linspace(0, 1, 20_001, dtype=torch.double)[:, None, None, None]
    params = torch.full_like(grid, logit)
    density = ContinuousBernoulli().log_prob(params, grid).exp()
    assert float(torch.trapezoid(density, grid.flatten())) == pytest.approx(1.0, abs=1e-4)
    bernoulli = Bernoulli().log_prob(params, grid).exp()
    assert abs(float(torch.trapezoid(bernoulli, grid.flatten())) - 1.0) > 0.05 or abs(logit) < 1e-3
    mean = float(ContinuousBernoulli().mean(params[:1]))
    assert mean == pytest.approx(float(torch.trapezoid(grid.flatten() * density, grid.flatten())), abs=1e-4)


@pytest.mark.parametrize("mean, raw_log_scale", [(0.5, -2.0), (0.02, -4.0), (0.97, -6.0), (0.3, 3.0), (-0.2, 0.0)])
def test_discretized_logistic_is_a_probability_mass_function_over_8_bit_values(mean, raw_log_scale):
    values = torch.arange(256, dtype=torch.double)[:, None, None, None] / 255
    params = _one_pixel_params([[mean, raw_log_scale]] * 256, 2)
    mass = DiscretizedLogistic().log_prob(params, values).exp()
    assert float(mass.sum()) == pytest.approx(1.0, abs=1e-3)
    assert (mass >= 0).all() and DiscretizedLogistic.reports_bits_per_dim


def test_discretized_logistic_matches_the_logistic_cdf_difference():
    params = _one_pixel_params([[0.4, -3.0]], 2)
    target = torch.tensor([100 / 255], dtype=torch.double).view(1, 1, 1, 1)
    log_scale = bounded_log_scale(torch.tensor(-3.0, dtype=torch.double))
    logistic = torch.distributions.TransformedDistribution(
        torch.distributions.Uniform(torch.tensor(0.0, dtype=torch.double), torch.tensor(1.0, dtype=torch.double)),
        [torch.distributions.transforms.SigmoidTransform().inv,
         torch.distributions.transforms.AffineTransform(0.4, log_scale.exp())])
    half = 0.5 / 255
    expected = logistic.cdf(target + half) - logistic.cdf(target - half)
    assert float(DiscretizedLogistic().log_prob(params, target).exp()) == pytest.approx(float(expected), rel=1e-6)
    samples = DiscretizedLogistic().sample(_one_pixel_params([[0.4, -3.0]] * 1000, 2))
    assert torch.equal(samples, torch.round(samples * 255) / 255) and samples.min() >= 0 and samples.max() <= 1


def test_a_sharp_discretized_logistic_costs_at_most_a_hundredth_of_a_bit_on_any_8_bit_value():
    """The log-scale floor: with the location on the value and the raw log-scale far below the floor, every value
    0..255 costs <= 0.01 bits, interior ones included (a floor of log s = -6 cost 1.41 bits on every interior
    value), and the result is finite with a finite gradient there."""
    values = torch.arange(256, dtype=torch.float32).view(256, 1, 1, 1) / 255
    for raw in (-20.0, -1000.0):
        params = torch.cat([values, torch.full_like(values, raw)], 1).requires_grad_()
        log_p = DiscretizedLogistic().log_prob(params, values)
        bits = -log_p.detach() / math.log(2)
        assert float(bits.max()) <= 0.01, (raw, bits.max())
        log_p.sum().backward()
        assert torch.isfinite(params.grad).all()
    assert float(bounded_log_scale(torch.tensor(-1000.0))) == -9.0  # the floor is reached, not approached


def test_default_pixel_likelihood_follows_the_number_of_grey_levels():
    assert [pixel_likelihood(n) for n in (None, 2, 256, 17)] == ["bernoulli", "bernoulli", "discretized_logistic",
                                                                  "continuous_bernoulli"]


def test_discretized_logistic_far_tails_match_the_exact_mass_in_double_precision():
    """Where a bin's mass underflows float32 arithmetic (< 1e-5), log_prob switches to the density times the bin
    width; it must still equal log(F(upper) - F(lower)), computed here exactly in float64 with log-sigmoids."""
    values = torch.arange(256, dtype=torch.double) / 255
    for mean, raw in ((0.2, -2.5), (0.8, -3.0), (0.5, -4.0)):
        params = torch.tensor([[mean, raw]], dtype=torch.float32).repeat(256, 1).view(256, 2, 1, 1)
        got = DiscretizedLogistic().log_prob(params, values.float().view(256, 1, 1, 1)).double()
        s = bounded_log_scale(torch.tensor(raw, dtype=torch.double)).exp()
        upper, lower = (values + 0.5 / 255 - mean) / s, (values - 0.5 / 255 - mean) / s
        # log(sigmoid(u) - sigmoid(l)) = log sigmoid(u) + log(1 - exp(log sigmoid(l) - log sigmoid(u)))
        exact = torch.nn.functional.logsigmoid(upper) + torch.log1p(-torch.exp(
            torch.nn.functional.logsigmoid(lower) - torch.nn.functional.logsigmoid(upper)))
        exact = torch.where(upper < 0, exact, torch.nn.functional.logsigmoid(-lower) + torch.log1p(-torch.exp(
            torch.nn.functional.logsigmoid(-upper) - torch.nn.functional.logsigmoid(-lower))))
        exact[0], exact[-1] = torch.nn.functional.logsigmoid(upper[0]), torch.nn.functional.logsigmoid(-lower[-1])
        tiny = exact.exp() < 1e-5
        assert tiny.sum() > 10  # the test reaches the underflow branch
        assert torch.allclose(got[tiny], exact[tiny], rtol=2e-3, atol=0.05), (mean, raw)
        assert torch.allclose(got[~tiny], exact[~tiny], atol=0.02), (mean, raw)  # float32 differences of sigmoids


@pytest.mark.parametrize("name", ["bernoulli", "continuous_bernoulli", "gaussian", "discretized_logistic"])
def test_pixel_likelihoods_sample_their_own_distribution_on_colour_images(name):
    """3-channel params (per_dim * 3 channels); 40 000 draws: the sample mean is mean(), the spread is the
    distribution's, and the samples lie on its support."""
    torch.manual_seed(0)
    likelihood = build_likelihood(name)
    per_dim = likelihood.params_per_dim
    base = torch.tensor([[-1.5, 0.0, 2.0], [-4.0, -3.0, -2.0]][:per_dim])  # (per_dim, 3): logits or means, log-variances
    if name == "discretized_logistic":
        base = torch.tensor([[0.2, 0.5, 0.9], [-4.3, -4.1, -3.9]])  # locations, raw log-scales (s = 0.013 .. 0.02)
    params = base.reshape(1, per_dim * 3, 1, 1).expand(40_000, per_dim * 3, 1, 1)
    draws = likelihood.sample(params)
    assert draws.shape == (40_000, 3, 1, 1)
    mean = likelihood.mean(params[:1])[0]
    assert mean.shape == (3, 1, 1)
    assert torch.allclose(draws.mean(0), mean, atol=0.02), (draws.mean(0).flatten(), mean.flatten())
    if name == "bernoulli":
        assert set(draws.unique().tolist()) == {0.0, 1.0}
    elif name == "continuous_bernoulli":
        assert draws.min() >= 0 and draws.max() <= 1
        assert torch.allclose(draws.var(0), torch.distributions.ContinuousBernoulli(logits=base[0]).variance.view(3, 1, 1),
                              rtol=0.05)
    elif name == "gaussian":
        std = torch.exp(0.5 * bounded_logvar(base[1])).view(3, 1, 1)
        assert torch.allclose(draws.std(0), std, rtol=0.03)
    else:
        assert torch.equal(draws, torch.round(draws * 255) / 255) and draws.min() >= 0 and draws.max() <= 1
        scale = torch.exp(bounded_log_scale(base[1])).view(3, 1, 1)
        assert torch.allclose(draws.std(0), scale * math.pi / math.sqrt(3), rtol=0.05)  # the logistic's spread


def test_categorical_samples_follow_the_softmax():
    torch.manual_seed(0)
    logits = torch.tensor([[2.0, 0.0, -1.0, 0.5]])
    draws = Categorical().sample(logits.expand(40_000, 4))
    frequencies = torch.bincount(draws, minlength=4).float() / 40_000
    assert torch.allclose(frequencies, Categorical().mean(logits)[0], atol=0.01)
    assert torch.allclose(Categorical().mean(torch.randn(5, 4)).sum(1), torch.ones(5))  # over classes, not the batch


def test_discretized_logistic_mean_is_its_location_clamped_to_the_pixel_range():
    params = torch.tensor([-0.3, 0.4, 1.4, 0.0, 0.0, 0.0]).view(1, 6, 1, 1)  # three locations, three log-scales
    assert DiscretizedLogistic().mean(params).flatten().tolist() == pytest.approx([0.0, 0.4, 1.0])


def _every_pixel_value(channels: int, first: int | None = None) -> torch.Tensor:
    """All 256^C values of one pixel (or those whose first channel is ``first``), as (N, C, 1, 1) on [0, 1]."""
    grids = torch.meshgrid(*[torch.arange(256, dtype=torch.float64) / 255] * channels, indexing="ij")
    values = torch.stack([g.reshape(-1) for g in grids], dim=1)
    if first is not None:
        values = values[values[:, 0] == first / 255]
    return values[:, :, None, None]


def _mixture_params(channels: int, components: int = 3, seed: int = 0) -> torch.Tensor:
    likelihood = build_likelihood("discretized_logistic_mixture", components=components)
    params = torch.randn(1, likelihood.param_channels(channels), 1, 1, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    scales = slice(components * (1 + channels), components * (1 + 2 * channels))
    params[:, scales] = params[:, scales] - 3.0  # scales of a few bins, couplings and locations anywhere
    return params


def test_the_logistic_mixture_is_a_probability_mass_function_over_a_pixels_values():
    """Two coupled channels: the 65 536 values' probabilities sum to 1 (enumerated), for several parameter draws, to
    within the midpoint rule that stands in for a bin whose mass underflows 1e-5 (as in the single logistic)."""
    likelihood = build_likelihood("discretized_logistic_mixture", components=3)
    values = _every_pixel_value(2)
    for seed in range(3):
        params = _mixture_params(2, seed=seed)
        log_p = likelihood.log_prob(params.expand(len(values), -1, -1, -1), values)
        assert float(torch.logsumexp(log_p, 0)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.slow
def test_the_logistic_mixture_sums_to_one_over_every_colour():
    """Three coupled channels (RGB): all 256^3 values enumerated, 256 slices of one red value each."""
    likelihood = build_likelihood("discretized_logistic_mixture", components=3)
    params = _mixture_params(3)
    slices = []
    for red in range(256):
        values = _every_pixel_value(3, first=red)
        slices.append(torch.logsumexp(likelihood.log_prob(params.expand(len(values), -1, -1, -1), values), 0))
    assert float(torch.logsumexp(torch.stack(slices), 0)) == pytest.approx(0.0, abs=1e-6)


def test_a_sharp_logistic_mixture_costs_at_most_a_hundredth_of_a_bit_on_any_8_bit_value():
    """The log-scale floor (-9, a sixteenth of a bin's half-width): every value 0..255 of every channel, interior
    ones included, costs <= 0.01 bits when the location sits on it (PixelCNN++'s floor of -7 would cost 0.04 here)."""
    likelihood = build_likelihood("discretized_logistic_mixture", components=1)
    values = torch.arange(256, dtype=torch.float32) / 255
    x = values[:, None, None, None].expand(256, 3, 1, 1)
    params = torch.cat([torch.zeros(256, 1), x[:, :, 0, 0], torch.full((256, 3), -1000.0), torch.zeros(256, 3)], 1)
    bits = -likelihood.log_prob(params[:, :, None, None], x) / math.log(2) / 3
    assert float(bits.max()) <= 0.01, bits.max()
    assert likelihood.mean(params[:, :, None, None]).equal(x)


def test_the_logistic_mixture_samples_its_own_distribution_with_coupled_channels():
    """One component, green coupled to red by 0.5: draws' means are the coupled locations, on the 8-bit grid."""
    torch.manual_seed(0)
    likelihood = build_likelihood("discretized_logistic_mixture", components=1)
    atanh = float(torch.atanh(torch.tensor(0.5)))
    params = torch.tensor([0.0, 0.3, 0.2, 0.6, -5.0, -5.0, -5.0, atanh, 0.0, 0.0]).reshape(1, 10, 1, 1)
    draws = likelihood.sample(params.expand(20_000, -1, -1, -1))
    assert draws.shape == (20_000, 3, 1, 1) and torch.equal(draws, torch.round(draws * 255) / 255)
    assert torch.allclose(draws.mean(0).flatten(), torch.tensor([0.3, 0.2 + 0.5 * 0.3, 0.6]), atol=0.01)
    assert torch.allclose(likelihood.mean(params).flatten(), torch.tensor([0.3, 0.35, 0.6]), atol=1e-6)


def test_a_model_trains_with_the_logistic_mixture_on_colour_images():
    from cvaezoo.models import MODELS

    model = MODELS["cvae1"](x_shape=(3, 6, 6), y_dim=3, net={"kind": "conv", "channels": [4], "hidden": [8]},
                            latent_dim=2, likelihood="discretized_logistic_mixture", likelihood_kwargs={"components": 2},
                            pixel_levels=256)
    x = torch.randint(0, 256, (4, 3, 6, 6)) / 255
    terms = model.elbo_terms(x, torch.arange(4) % 3)
    terms.recon.mean().backward()
    assert torch.isfinite(terms.recon).all() and model.bits_per_dim(-terms.recon.mean()) > 0
    assert model.sample(torch.arange(3), n=2).shape == (3, 2, 3, 6, 6)
    assert model.sample(torch.arange(3), use_mean=False).unique().numel() > 2  # drawn on the 8-bit grid


def test_a_shared_scale_is_one_learned_log_scale_per_channel_for_every_pixel_and_input():
    """scale=shared: the decoder outputs the locations and holds one learned raw log-scale per channel (its last
    channels are constants, broadcast), which training moves; scale=pixel keeps a log-scale output per pixel."""
    from cvaezoo.errors import UserError
    from cvaezoo.models import MODELS

    def build(scale: str):
        torch.manual_seed(0)
        return MODELS["cvae1"](x_shape=(3, 6, 6), y_dim=3, net={"kind": "conv", "channels": [4], "hidden": [8]},
                               latent_dim=2, likelihood_kwargs={"scale": scale}, pixel_levels=256, pixel_outlier_weight=0)

    shared, per_pixel = build("shared"), build("pixel")
    assert shared.decoder_net.constants.shape == (3,) and per_pixel.decoder_net.constants is None
    assert shared.decoder_net.params_shape == (3, 6, 6) and per_pixel.decoder_net.params_shape == (6, 6, 6)
    inputs = torch.randn(5, 2 + 3)
    with torch.no_grad():
        shared.decoder_net.constants.copy_(torch.tensor([-1.0, -0.5, 0.2]))
    log_scales = [likelihood._split(net(inputs))[1] for likelihood, net in ((shared.likelihood, shared.decoder_net),
                                                                          (per_pixel.likelihood, per_pixel.decoder_net))]
    expected = (DiscretizedLogistic.SHARED_SCALE_GAIN * torch.tensor([-1.0, -0.5, 0.2])).view(1, 3, 1, 1)
    assert torch.allclose(log_scales[0], expected.expand(5, 3, 6, 6))
    assert log_scales[1].flatten(1).std(1).min() > 0  # a network output: it varies over pixels
    x = torch.randint(0, 256, (4, 3, 6, 6)) / 255
    shared.elbo_terms(x, torch.arange(4) % 3).recon.mean().backward()
    assert (shared.decoder_net.constants.grad.abs() > 0).all()
    with pytest.raises(UserError, match="scale must be one of"):
        build_likelihood("discretized_logistic", scale="image")


@pytest.mark.parametrize("weight", [1e-3, 0.01, 0.1])
def test_an_outlier_weight_keeps_a_pmf_and_bounds_what_one_pixel_costs(weight):
    """(1 - w) p + w u is a probability mass function still (the 256 values of an 8-bit pixel, the two of a binary
    one); a sharp model pays at most -log(w u) for a value it was sure could not occur, where alone it pays
    28 nats one grey level off and thousands further out, and at most -log(1 - w) more for the value it was sure of."""
    from cvaezoo.distributions import with_outliers

    values = torch.arange(256, dtype=torch.double)[:, None, None, None] / 255
    sharp = _one_pixel_params([[0.0, -20.0]] * 256, 2)  # sure of black
    logistic = with_outliers(DiscretizedLogistic(), weight)
    mass = logistic.log_prob(sharp, values).exp()
    assert float(mass.sum()) == pytest.approx(1.0, abs=1e-6)  # the density stands in for masses under 1e-5
    alone = DiscretizedLogistic().log_prob(sharp, values)
    assert float(-alone[1]) > 20 and float(-alone[-1]) > 1000  # one grey level off black; white
    assert float(-logistic.log_prob(sharp, values)[1:].min()) == pytest.approx(-math.log(weight / 256), rel=1e-6)
    assert float(alone[0] - logistic.log_prob(sharp, values)[0]) <= -math.log(1 - weight) + 1e-9
    binary = torch.tensor([[0.0], [1.0]], dtype=torch.double)
    logits = torch.full((2, 1), -40.0, dtype=torch.double)
    bernoulli = with_outliers(Bernoulli(), weight)
    assert float(bernoulli.log_prob(logits, binary).exp().sum()) == pytest.approx(1.0, abs=1e-12)
    assert float(-bernoulli.log_prob(logits, binary)[1]) == pytest.approx(-math.log(weight / 2), rel=1e-6)
    assert torch.equal(logistic.mean(sharp), DiscretizedLogistic().mean(sharp))  # the clean component's


def test_the_outlier_weight_applies_to_pixel_likelihoods_only_and_an_old_checkpoint_loads_without_it():
    from cvaezoo.checkpoint_files import CHECKPOINT_FORMAT
    from cvaezoo.distributions import WithOutliers, with_outliers
    from cvaezoo.errors import UserError
    from cvaezoo.models import MODELS

    net = {"hidden": [8]}
    model = MODELS["cvae1"](x_shape=(1, 4, 4), y_dim=3, net=net, latent_dim=2, pixel_levels=256, pixel_outlier_weight=0.05)
    assert isinstance(model.likelihood, WithOutliers) and model.likelihood.weight == 0.05
    assert model.likelihood.reports_bits_per_dim and model.likelihood.oldest_checkpoint_format == 2
    assert not isinstance(MODELS["cvae3"](x_shape=(1, 4, 4), y_dim=3, net=net, latent_dim=2).likelihood, WithOutliers)
    assert MODELS["cvae1"](x_shape=(1, 4, 4), y_dim=3, net=net, latent_dim=2, pixel_outlier_weight=0.0).likelihood_name \
        == "bernoulli"
    with pytest.raises(UserError, match=r"pixel_outlier_weight must be in \[0, 1\), got 1.5"):
        MODELS["cvae1"](x_shape=(1, 4, 4), y_dim=3, net=net, latent_dim=2, pixel_outlier_weight=1.5)
    with pytest.raises(UserError, match="Categorical has no uniform distribution to mix in.*pixel_outlier_weight=0"):
        with_outliers(Categorical(), 0.01)
    model.on_load_checkpoint({"cvaezoo_model": "cvae1", "cvaezoo_format": 2, "state_dict": model.state_dict()})
    assert isinstance(model.likelihood, DiscretizedLogistic) and model.hparams.pixel_outlier_weight == 0.0
    current = MODELS["cvae1"](x_shape=(1, 4, 4), y_dim=3, net=net, latent_dim=2)
    current.on_load_checkpoint({"cvaezoo_model": "cvae1", "cvaezoo_format": CHECKPOINT_FORMAT, "state_dict": current.state_dict()})
    assert isinstance(current.likelihood, WithOutliers) and current.likelihood.weight == 0.01  # the default
