"""The four models: shapes, the arrows of each graph, and the bound against exact log-likelihoods."""

import math

import pytest
import torch
from conftest import IMAGE_MODELS, LATENT_MODELS
from torch import nn

from cvaezoo.models import MODELS

SMALL_NET = {"kind": "mlp", "hidden": [32, 16]}


def make_model(name: str, x_shape=(1, 8, 8), latent_dim: int = 4, **kwargs):
    latent = {"latent_dim": latent_dim} if MODELS[name].has_latent else {}  # the baseline has no z
    return MODELS[name](x_shape=x_shape, y_dim=10, net=SMALL_NET, **latent, **kwargs)


def batch(n: int = 6, x_shape=(1, 8, 8)):
    return torch.bernoulli(torch.full((n, *x_shape), 0.3)), torch.arange(n) % 10


def double_model_batch_and_noise(name: str, draws: int):
    """A model in double precision, a batch of 6 and standard-normal noise for ``draws`` posterior samples."""
    model = make_model(name).double()
    x, y = batch()
    return model, x.double(), y, torch.randn(draws, 6, model.latent_dim, dtype=torch.double)


@pytest.mark.parametrize("name", list(MODELS))
def test_forward_backward_shapes_and_finite_loss_and_every_network_learns(name):
    model = make_model(name)
    x, y = batch()
    terms = model.elbo_terms(x, y, samples=3) if model.has_latent else model.elbo_terms(x, y)
    assert terms.recon.shape == terms.kl.shape == terms.elbo.shape == (6,)
    assert torch.isfinite(terms.elbo).all() and (terms.kl >= 0).all() and (terms.recon >= 0).all()
    model.training_loss(x, y, terms, kl_weight=0.5).mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []  # the objective reaches every network: prior, posterior, decoder (and M2's classifier)


@pytest.mark.parametrize("name", [n for n in LATENT_MODELS if n != "m2"])
def test_loss_is_reconstruction_plus_weighted_kl(name):
    """recon + kl_weight * KL exactly: dropping or reweighting the KL changes it."""
    model = make_model(name, beta=0.5)
    x, y = batch()
    terms = model.elbo_terms(x, y)
    assert (terms.kl > 0.01).all()  # a KL that matters
    for weight in (0.0, 0.3, 1.0):
        assert torch.allclose(model.training_loss(x, y, terms, weight), terms.recon + weight * terms.kl)


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_generative_samples_have_the_data_shape_and_range(name):
    model = make_model(name)
    samples = model.sample(torch.tensor([0, 3, 9]), n=5)
    assert samples.shape == (3, 5, 1, 8, 8)
    assert samples.min() >= 0 and samples.max() <= 1


def test_cvae3_samples_labels_given_x():
    model = make_model("cvae3")
    x, _ = batch(4)
    samples = model.sample(x, n=7)
    assert samples.shape == (4, 7, 10)
    assert torch.allclose(samples.sum(-1), torch.ones(4, 7), atol=1e-5)  # class probabilities


def test_cvae2_prior_is_exactly_standard_normal_and_has_no_parameters():
    model = make_model("cvae2")
    x, y = batch()
    prior = model.prior(x, model.encode_condition(y))
    assert torch.equal(prior.mean, torch.zeros(6, 4)) and torch.equal(prior.logvar, torch.zeros(6, 4))
    assert not any("prior" in name for name, _ in model.named_parameters())
    # and its KL is the textbook KL(q || N(0, I))
    q = model.posterior(x, model.encode_condition(y))
    textbook = 0.5 * (q.mean**2 + q.logvar.exp() - 1 - q.logvar).sum(-1)
    assert torch.allclose(q.kl(prior), textbook, atol=1e-5)


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_decoder_sees_y_only_where_the_model_declares_it(name):
    model = make_model(name)
    sees_y = model.decoder_sees_condition  # what the tools rely on (analogy and editing grids) must be true
    x, y = batch()
    c = model.encode_condition(y).requires_grad_(True)
    z = torch.randn(6, 4)
    recon = -model.likelihood.log_prob(model.likelihood_params(z, x, c), x).sum()
    (grad,) = torch.autograd.grad(recon, c, allow_unused=True)
    if sees_y:
        assert grad is not None and grad.abs().sum() > 0
    else:
        assert grad is None or torch.count_nonzero(grad) == 0


def test_cvae4_prior_depends_on_y_and_cvae3_prior_on_x():
    cvae4, cvae3 = make_model("cvae4"), make_model("cvae3")
    x, y = batch(2)
    c = cvae4.encode_condition(y)
    assert not torch.allclose(cvae4.prior(x, c).mean[0], cvae4.prior(x, c).mean[1])
    p1, p2 = cvae3.prior(x, None), cvae3.prior(torch.zeros_like(x), None)
    assert not torch.allclose(p1.mean, p2.mean)


def test_cvae3_reconstruction_term_is_log_p_y_given_x_z():
    model = make_model("cvae3")
    x, y = batch()
    eps = torch.randn(1, 6, 4)
    terms = model.elbo_terms(x, y, samples=1, eps=eps)
    q = model.posterior(x, model.encode_condition(y))
    logits = model.predictor_head(model.predictor_trunk(x, q.mean + q.std * eps[0]))
    by_hand = nn.functional.cross_entropy(logits, y, reduction="none")
    assert torch.allclose(terms.recon, by_hand, atol=1e-5)
    assert torch.allclose(terms.kl, q.kl(model.prior(x, None)))


def exact_log_likelihood(model, x, y, points: int = 4001) -> torch.Tensor:
    """log p(target|cond) for a 1-d latent by quadrature: integral of p(target|z) p(z) dz."""
    c = model.encode_condition(y)
    prior = model.prior(x, c)
    t = torch.linspace(-10, 10, points)[:, None, None]  # z = mean + std * t
    z = prior.mean + prior.std * t  # (points, B, 1)
    log_integrand = model.log_likelihood(z, x, c, model.target(x, y)) - 0.5 * (t[..., 0] ** 2 + math.log(2 * math.pi))
    return torch.logsumexp(log_integrand, dim=0) + math.log(20 / (points - 1))


@pytest.mark.parametrize("name", LATENT_MODELS)
def test_elbo_below_iwae_below_exact_log_likelihood(name):
    model = make_model(name, x_shape=(1, 2, 2), latent_dim=1).double()
    x, y = batch(5, x_shape=(1, 2, 2))
    x = x.double()
    with torch.no_grad():
        exact = exact_log_likelihood(model, x, y)
        elbo = model.elbo_terms(x, y, samples=20_000).elbo
        iwae = torch.stack([model.iwae_bound(x, y, samples=2_000) for _ in range(5)]).mean(0)
    assert (elbo <= exact + 1e-3).all(), (elbo, exact)
    assert (iwae <= exact + 1e-2).all(), (iwae, exact)
    assert (iwae >= elbo - 1e-2).all(), (iwae, elbo)
    assert (exact - iwae).mean() < (exact - elbo).mean()  # importance weighting tightens the bound


@pytest.mark.parametrize("name", LATENT_MODELS)
def test_iwae_with_one_sample_is_the_single_sample_elbo(name):
    model, x, y, eps = double_model_batch_and_noise(name, draws=1)
    with torch.no_grad():
        iwae = model.iwae_bound(x, y, samples=1, eps=eps)
        c = model.encode_condition(y)
        q, p = model.posterior(x, c), model.prior(x, c)
        z = q.rsample(eps=eps)
        single = model.log_likelihood(z, x, c, model.target(x, y))[0] + p.log_prob(z[0]) - q.log_prob(z[0])
        assert torch.allclose(iwae, single)
        # averaged over many draws, IWAE(K=1) is the ELBO with its closed-form KL
        many = torch.stack([model.iwae_bound(x, y, samples=1) for _ in range(4000)]).mean(0)
        elbo = model.elbo_terms(x, y, samples=4000).elbo
    assert torch.allclose(many, elbo, atol=0.5), (many, elbo)


def test_kl_warmup_is_linear_up_to_beta():
    model = make_model("cvae1", beta=2.0, kl_warmup_steps=100)
    assert model.kl_weight() == 0.0
    for step, expected in [(50, 1.0), (100, 2.0), (400, 2.0)]:
        model._trainer = type("T", (), {"global_step": step})()
        assert model.kl_weight() == pytest.approx(expected)


@pytest.mark.parametrize("name", LATENT_MODELS)
def test_wrong_input_shapes_give_clear_errors(name):
    model = make_model(name)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 1, 8, 8\), got \(6, 1, 28, 28\)"):
        model.elbo_terms(torch.rand(6, 1, 28, 28), torch.arange(6))
    if model.condition_dim > 0:  # the unconditional VAE ignores y
        with pytest.raises(ValueError, match=r"class labels must have shape \(B,\)"):
            model.elbo_terms(torch.rand(6, 1, 8, 8), torch.zeros(6, 10))


@pytest.mark.parametrize(
    "kwargs, key",
    [({"latent_dim": 0}, "latent_dim"), ({"beta": -1.0}, "beta"), ({"n_samples": 0}, "n_samples"),
     ({"lr": 0.0}, "lr"), ({"kl_warmup_steps": -5}, "kl_warmup_steps")],
)
def test_bad_hyperparameters_name_the_key(kwargs, key):
    args = {"latent_dim": 4, **kwargs}
    with pytest.raises(ValueError, match=key):
        MODELS["cvae1"](x_shape=(1, 8, 8), y_dim=10, net=SMALL_NET, **args)


def test_multihot_conditions_pass_through():
    model = MODELS["cvae4"](x_shape=(1, 8, 8), y_kind="multihot", y_dim=3, net=SMALL_NET, latent_dim=4)
    x = torch.rand(5, 1, 8, 8)
    y = torch.randint(0, 2, (5, 3)).float()
    assert torch.equal(model.encode_condition(y), y)
    assert model.elbo_terms(x, y).elbo.shape == (5,)
    with pytest.raises(ValueError, match=r"attribute vectors must have shape \(B, 3\), got \(5, 4\)"):
        model.elbo_terms(x, torch.ones(5, 4))


def test_vae_ignores_the_label_and_refuses_to_classify():
    model = make_model("vae")
    x, y = batch()
    eps = torch.randn(1, 6, 4)
    assert torch.equal(model.elbo_terms(x, y, eps=eps).elbo, model.elbo_terms(x, (y + 1) % 10, eps=eps).elbo)
    with pytest.raises(ValueError, match="vae does not classify: it has no classifier mode"):
        model.predict_proba(x)
    with pytest.raises(ValueError, match="ignores the label"):
        model.class_bounds(x)


def test_bernoulli_on_grey_pixels_is_refused_unless_allowed():
    with pytest.raises(ValueError, match="model.likelihood=bernoulli is a distribution over binary pixels, but this data "
                                         "has 256 grey levels"):
        MODELS["cvae1"](x_shape=(1, 8, 8), net=SMALL_NET, likelihood="bernoulli", pixel_levels=256)
    allowed = MODELS["cvae1"](x_shape=(1, 8, 8), net=SMALL_NET, likelihood="bernoulli", pixel_levels=256,
                              allow_grey_bernoulli=True)
    assert allowed.likelihood_name == "bernoulli"
    with pytest.raises(ValueError, match="baseline with y_kind='vector' needs model.likelihood=bernoulli or gaussian"):
        MODELS["baseline"](x_shape=(1, 4, 4), y_kind="vector", y_dim=8, likelihood="categorical")


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "cvae1", "likelihood": "bernoulli", "pixel_levels": 17},
     "this data has 17 grey levels, so its bound would bound nothing: use model.likelihood=null (here "
     "continuous_bernoulli), continuous_bernoulli or gaussian, or binarize the data (data.binarize=dynamic or "
     "threshold); model.allow_grey_bernoulli=true keeps the unnormalised BCE"),
    ({"name": "cvae3", "likelihood": "bernoulli"}, "cvae3 with y_kind='class' needs model.likelihood=categorical, "
                                                   "got 'bernoulli'"),
    ({"name": "cvae4", "likelihood": "categorical"}, "cvae4 models images x: model.likelihood=categorical is for "
                                                     "class labels"),
])
def test_a_likelihood_that_does_not_fit_the_target_is_refused_with_the_fix(kwargs, message):
    name = kwargs.pop("name")
    with pytest.raises(ValueError) as refused:
        MODELS[name](x_shape=(1, 8, 8), y_dim=10, net=SMALL_NET, latent_dim=2, **kwargs)
    assert message in str(refused.value)


@pytest.mark.parametrize("name, y_kind, levels, expected", [
    ("cvae1", "class", 2, "bernoulli"), ("cvae4", "class", 256, "discretized_logistic"),
    ("cvae2", "class", 17, "continuous_bernoulli"), ("cvae3", "class", 256, "categorical"),
    ("cvae3", "vector", 2, "bernoulli"), ("baseline", "vector", 256, "discretized_logistic")])
def test_default_likelihood_comes_from_the_model_and_the_data(name, y_kind, levels, expected):
    model = make_model(name, latent_dim=2, y_kind=y_kind, pixel_levels=levels)
    assert model.likelihood_name == expected


def test_eight_bit_data_reports_bits_per_dimension(compose_config):
    from cvaezoo.runs import build

    datamodule, model = build(compose_config("data.binarize=none", "data.split=[100,50,50]", "~logger"))
    assert model.likelihood_name == "discretized_logistic"
    assert model.bits_per_dim(-math.log(2) * 784) == pytest.approx(1.0)  # one bit per pixel
    from cvaezoo.inference import evaluate_bound

    x, y = datamodule.split_tensors("test")
    result = evaluate_bound(model, x[:20], y[:20], iwae_samples=2)
    assert result["bpd_elbo"] == pytest.approx(-result["elbo"] / (784 * math.log(2)))


def test_bayes_rule_adds_the_log_class_prior():
    """Fixed class bounds in, known posterior out: p(y|x) ∝ p(x|y) p(y) with a non-uniform p(y)."""
    model = MODELS["cvae1"](x_shape=(1, 8, 8), y_dim=3, net=SMALL_NET, latent_dim=2, class_prior=[0.5, 0.25, 0.25])
    likelihoods = torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.2, 0.2]])
    model.class_bounds = lambda x, samples=1, method="elbo": torch.log(likelihoods)
    posterior = model.predict_proba(torch.zeros(2, 1, 8, 8))
    by_hand = torch.tensor([[0.1, 0.075, 0.125], [0.3, 0.05, 0.05]])  # p(x|y) p(y)
    assert torch.allclose(posterior, by_hand / by_hand.sum(1, keepdim=True), atol=1e-6)
    assert model.classify(torch.zeros(2, 1, 8, 8)).tolist() == [2, 0]


def test_cvae3_averages_probabilities_over_z_not_logits():
    """p(y|x) = E_p(z|x)[softmax(logits(x, z))]: two draws with logits [4, 0] and [0, 0]."""
    model = make_model("cvae3")
    logits = torch.tensor([[4.0, 0.0] + [-30.0] * 8, [0.0, 0.0] + [-30.0] * 8])  # draw 1, draw 2 for one x
    model.sampled_likelihood_params = lambda z, x, c: logits
    probs = model.predict_proba(torch.zeros(1, 1, 8, 8), samples=2)
    expected = torch.softmax(logits, -1).mean(0)  # [0.741, 0.259, ...]; averaging logits would give [0.881, 0.119]
    assert torch.allclose(probs[0], expected, atol=1e-6) and probs[0, 0] == pytest.approx(0.7410, abs=1e-3)


def test_cvae3_classifier_mode_reads_the_prior_mean_or_averages_k_prior_draws():
    """method="mean": softmax of the logits at z = the prior mean; "mc" (the default, 100 draws): the mean of the
    softmax over ``samples`` draws z ~ p(z|x), each input with its own draws; structured outputs are refused."""
    model = make_model("cvae3").eval()
    x = torch.rand(3, 1, 8, 8)
    prior = model.prior(x, None)

    def by_hand(z):  # (S, B, D) -> mean over S of softmax(logits(x, z))
        return torch.stack([torch.softmax(model.likelihood_params(zs, x, None), -1) for zs in z]).mean(0)

    at_mean = by_hand(prior.mean[None])
    assert torch.allclose(model.predict_proba(x, method="mean"), at_mean, atol=1e-6)
    torch.manual_seed(0)
    by_default = model.predict_proba(x)
    torch.manual_seed(0)
    assert torch.allclose(by_default, by_hand(prior.rsample(100)), atol=1e-6)
    torch.manual_seed(0)
    drawn = model.predict_proba(x, samples=5)
    torch.manual_seed(0)
    assert torch.allclose(drawn, by_hand(prior.rsample(5)), atol=1e-6) and not torch.allclose(drawn, at_mean)
    torch.manual_seed(0)
    assert not torch.allclose(model.predict_proba(x, samples=1), at_mean)  # one draw is not the mean
    structured = make_model("cvae3", y_kind="vector", likelihood="bernoulli")
    with pytest.raises(ValueError, match="cvae3 on vector conditions has no classifier mode \\(it is for class labels; use sample\\(x, n\\)"):
        structured.predict_proba(x)


def test_bayes_rule_classifies_with_the_declared_default_mode():
    """predict_proba(x) asks class_bounds for the model's declared default, the ELBO with 10 draws (as
    cvaezoo-classify does), unless told otherwise; a method's own default count where only the method is given."""
    model = make_model("cvae1")
    asked = []
    model.class_bounds = lambda x, samples, method: asked.append((samples, method)) or torch.zeros(len(x), 10)
    model.predict_proba(torch.zeros(2, 1, 8, 8))
    model.predict_proba(torch.zeros(2, 1, 8, 8), samples=7, method="iwae")
    model.predict_proba(torch.zeros(2, 1, 8, 8), method="iwae")
    assert asked == [(10, "elbo"), (7, "iwae"), (100, "iwae")]


@pytest.mark.parametrize("name", LATENT_MODELS)
def test_iwae_is_above_the_mean_of_its_own_log_weights(name):
    """For the same draws: log mean exp(log w) >= mean log w (Jensen), strictly unless all weights agree."""
    model, x, y, eps = double_model_batch_and_noise(name, draws=8)
    with torch.no_grad():
        iwae = model.iwae_bound(x, y, samples=8, eps=eps)
        log_weights = torch.stack([model.iwae_bound(x, y, samples=1, eps=eps[i : i + 1]) for i in range(8)])
    assert torch.allclose(iwae, torch.logsumexp(log_weights, 0) - math.log(8))
    assert (iwae - log_weights.mean(0) > 1e-4).all()


def test_iwae_reaches_the_exact_log_likelihood_across_a_one_nat_gap():
    """A deliberately poor q(z|x,y) (shifted and too wide) leaves the ELBO about a nat or more below the exact
    log p(x|y); the importance-weighted bound closes that gap as K grows, and never overshoots it."""
    torch.manual_seed(0)
    model = make_model("cvae1", x_shape=(1, 2, 2), latent_dim=1).double()
    x, y = batch(5, x_shape=(1, 2, 2))
    x = x.double()
    good = model.posterior
    model.posterior = lambda x, c: (lambda q: type(q)(q.mean + 1.5, q.logvar + 1.0))(good(x, c))
    with torch.no_grad():
        exact = exact_log_likelihood(model, x, y)
        elbo = model.elbo_terms(x, y, samples=20_000).elbo
        iwae = {k: torch.stack([model.iwae_bound(x, y, samples=k) for _ in range(4)]).mean(0) for k in (10, 5_000)}
    gap = exact - elbo
    assert (gap > 1.0).all(), gap  # between one and two nats: far above Monte-Carlo noise
    assert (iwae[10] > elbo + 0.5).all()  # a few importance samples already recover much of it
    assert torch.allclose(iwae[5_000], exact, atol=0.05), (iwae[5_000], exact)


@pytest.mark.parametrize("name", [name for name in IMAGE_MODELS if MODELS[name].generation_latent == "prior"])
def test_generation_draws_z_from_the_models_prior_and_decodes_its_mean(name):
    """model.sample(y) = mean of p(x|z, ...) at z = mean + std * eps of the model's own p(z|y), value by value."""
    model = make_model(name)
    labels = torch.tensor([0, 3, 9])
    torch.manual_seed(5)
    samples = model.sample(labels, n=2)
    torch.manual_seed(5)
    c = model.encode_condition(labels)
    prior = model.prior(None, c)
    eps = torch.randn(2, 3, model.latent_dim)
    z = prior.mean + prior.std * eps  # (n, B, D)
    by_hand = torch.stack([model.likelihood.mean(model.likelihood_params(z[i], None, c)) for i in range(2)], dim=1)
    assert torch.allclose(samples, by_hand, atol=1e-6)
    if name in ("cvae1", "cvae4"):  # a label-conditioned prior: other labels, other images
        assert not torch.allclose(samples[0], samples[1])


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_cvae3_hybrid_loss_mixes_the_bound_and_the_gsnn_term(alpha):
    """Sohn et al.'s hybrid: alpha * (recon + w * KL) + (1 - alpha) * GSNN NLL, with the GSNN term logged;
    alpha = 1 is the plain CVAE (no GSNN term), alpha = 0 the GSNN."""
    model = make_model("cvae3", hybrid_alpha=alpha)
    x, y = batch()
    terms = model.elbo_terms(x, y)
    torch.manual_seed(1)
    loss = model.training_loss(x, y, terms, 0.5)
    cvae = terms.recon + 0.5 * terms.kl
    if alpha == 1.0:
        assert torch.equal(loss, cvae) and "gsnn_nll" not in terms.extras
        return
    torch.manual_seed(1)
    gsnn = model.gsnn_nll(x, y)
    assert torch.allclose(terms.extras["gsnn_nll"], gsnn) and (gsnn > 0).all()
    assert torch.allclose(loss, alpha * cvae + (1 - alpha) * gsnn)


def test_classifier_mode_over_the_iwae_bound_and_unknown_methods():
    """predict_proba(method="iwae") is Bayes rule over the importance-weighted bound of each class, with the
    same noise for every class; another method name is refused."""
    model = make_model("cvae1").double().eval()
    x, _ = batch()
    x = x.double()
    torch.manual_seed(3)
    bounds = model.class_bounds(x, samples=5, method="iwae")
    torch.manual_seed(3)
    eps = torch.randn(5, 1, len(x), model.latent_dim, dtype=torch.double)
    for c in (0, 4):
        own = model.iwae_bound(x, torch.full((len(x),), c), 5, eps=eps[:, 0])
        assert torch.allclose(bounds[:, c], own)
    torch.manual_seed(3)
    assert torch.allclose(model.predict_proba(x, samples=5, method="iwae"), torch.softmax(bounds + model.log_class_prior, -1))
    with pytest.raises(ValueError, match="method must be 'elbo', 'iwae' or 'optimise', got 'mc'"):
        model.class_bounds(x, method="mc")
    with pytest.raises(ValueError, match="CVAE3 has no class-conditional likelihood p\\(x\\|y\\) to invert"):
        make_model("cvae3").class_bounds(x.float())


def test_bits_per_dimension_count_the_dimensions_of_the_target():
    """-log2 p per dimension of what the model predicts: x for the generative models, y for CVAE-3."""
    generative = make_model("cvae1", x_shape=(3, 4, 5))
    assert generative.bits_per_dim(-60 * math.log(2)) == pytest.approx(1.0)  # 60 pixel values
    predictive = MODELS["cvae3"](x_shape=(1, 8, 8), y_kind="vector", y_dim=6, net=SMALL_NET, latent_dim=4)
    assert predictive.bits_per_dim(-12 * math.log(2)) == pytest.approx(2.0)  # 6 output values


def test_training_logs_bits_per_dimension_beside_the_bound_on_8_bit_data(compose_config):
    """{stage}/bpd is the ELBO in bits per dimension, logged once per epoch next to it, and only there."""
    from cvaezoo.train import train

    metrics = train(compose_config("data.binarize=none", "data.split=[64,32,32]", "data.batch_size=32",
                                   "trainer.max_epochs=1", "~logger"))
    assert metrics["test/bpd"] == pytest.approx(-metrics["test/elbo"] / (784 * math.log(2)), rel=1e-5)
    assert metrics["test/recon"] == pytest.approx(-metrics["test/elbo"] - metrics["test/kl"], rel=1e-5)


def test_gsnn_term_is_one_number_per_example_averaged_over_prior_draws():
    model = make_model("cvae3", hybrid_alpha=0.5)
    x, y = batch(n=6)
    torch.manual_seed(2)
    nll = model.gsnn_nll(x, y, samples=3)
    torch.manual_seed(2)
    per_draw = model.prior_log_likelihoods(x, y, 3)  # (draws, batch)
    assert nll.shape == (6,) and torch.allclose(nll, -per_draw.mean(0))


def test_condition_network_output_size_is_its_last_hidden_layer():
    model = MODELS["cvae1"](x_shape=(1, 8, 8), y_dim=10, net={"kind": "mlp", "hidden": [32, 24, 16]}, latent_dim=4)
    x, y = batch()
    assert torch.isfinite(model.elbo_terms(x, y).elbo).all()


@pytest.mark.parametrize("name", [name for name in IMAGE_MODELS if MODELS[name].generation_latent == "resampled"])
def test_a_model_of_the_label_generates_from_the_draws_of_z_that_its_label_explains(name):
    """Label 0 is certain where z_0 > 0 and label 1 where z_0 < 0, and each pixel's mean is sigmoid(z_0): every sample
    of label 0 is bright and every sample of label 1 dark (draws taken from p(z) alone would be each half the time)."""
    model = make_model(name)
    model.label_logits = lambda z, x: torch.stack([50 * z[:, 0], -50 * z[:, 0], *[-100 + 0 * z[:, 0]] * 8], dim=-1)
    model.likelihood_params = lambda z, x, c: 20 * z[:, :1, None, None].expand(-1, 1, 8, 8)
    samples = model.sample(torch.tensor([0, 1]), n=50)
    assert (samples[0] > 0.5).all() and (samples[1] < 0.5).all()


@pytest.mark.parametrize("name", [name for name in IMAGE_MODELS if MODELS[name].generation_latent == "resampled"])
def test_bayes_rule_of_a_model_of_the_label_adds_no_class_prior(name):
    """Its bound holds log p(y|z, ...): classifier mode is softmax of the bounds themselves, whatever class_prior says."""
    model = make_model(name, class_prior=[0.91] + [0.01] * 9).eval()
    x, _ = batch()
    torch.manual_seed(0)
    bounds = model.class_bounds(x, samples=4)
    torch.manual_seed(0)
    assert torch.allclose(model.log_predictive(x, "elbo", 4), torch.log_softmax(bounds, -1), atol=1e-5)


def test_li_et_al_networks_are_5x5_convolutions_that_keep_the_feature_map_sizes():
    """net=li2019: kernel_size 5 with three stride-2 layers maps 28 -> 14 -> 7 -> 4 and the decoder back to 28."""
    from cvaezoo.nets import Decoder, Encoder, NetConfig

    net = NetConfig.from_dict({"kind": "conv", "channels": [4, 4, 4], "hidden": [8], "kernel_size": 5})
    encoder = Encoder((1, 28, 28), 0, net)
    assert [m.kernel_size for m in encoder.trunk if isinstance(m, nn.Conv2d)] == [(5, 5)] * 3
    assert encoder.trunk(torch.zeros(2, 1, 28, 28)).shape == (2, 4 * 4 * 4)
    assert Decoder(3, (1, 28, 28), 1, net)(torch.zeros(2, 3)).shape == (2, 1, 28, 28)
    with pytest.raises(Exception, match="odd positive integer"):
        NetConfig.from_dict({"kind": "conv", "kernel_size": 4})


def test_cvae3_iwae_classifier_is_the_bound_on_log_p_y_given_x_normalised_over_classes():
    """method "iwae" (Li et al.'s): log_softmax over classes of iwae_bound(x, y) with the same draws."""
    model = make_model("dbx").eval()
    x, _ = batch(3)
    torch.manual_seed(1)
    got = model.log_predictive(x, "iwae", 7)
    torch.manual_seed(1)
    classes = torch.arange(10).repeat_interleave(3)
    bounds = model.iwae_bound(x.repeat(10, 1, 1, 1), classes, 7).view(10, 3).T
    assert torch.allclose(got, torch.log_softmax(bounds, -1), atol=1e-5)
    assert not torch.allclose(got, model.log_predictive(x, "mean"), atol=1e-3)


def test_a_gaussian_with_a_sigmoid_mean_is_li_et_al_s_l2_likelihood():
    """fixed variance 1/2 around sigmoid(params): log p = -sum (x - sigmoid(params))^2 - const, the mean in (0, 1)."""
    from cvaezoo.distributions import Gaussian

    likelihood = Gaussian(learn_variance=False, fixed_std=0.5 ** 0.5, sigmoid_mean=True)
    params, x = torch.randn(4, 1, 3, 3) * 5, torch.rand(4, 1, 3, 3)
    expected = -((x - torch.sigmoid(params)) ** 2).sum((1, 2, 3)) - 9 * 0.5 * math.log(math.pi)
    assert torch.allclose(likelihood.log_prob(params, x), expected, atol=1e-5)
    assert torch.equal(likelihood.mean(params), torch.sigmoid(params))
