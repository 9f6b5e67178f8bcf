"""What every model of a target given a condition shares, bound or no bound: the class data tools read, the
data's spec (shapes, condition kind, class prior), the choice of likelihood, the inputs' checks, the network
building blocks, and classifier mode's named options (:class:`ClassifierMode`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cvaezoo.distributions import Likelihood, build_likelihood, pixel_likelihood, with_outliers
from cvaezoo.errors import UserError
from cvaezoo.models.guard import NONFINITE_POLICIES
from cvaezoo.models.training import TrainedModel
from cvaezoo.nets import Decoder, Encoder, NetConfig, mlp

CONDITION_KINDS = ("class", "multihot", "vector")  # multi-hot and vector conditions pass through alike


@dataclass(frozen=True)
class ClassifierMode:
    """How classifier mode computes p(y|x): ``method``, one of the model's ``classifier_methods``, and
    ``samples``, the number of draws it takes (0 for a method that draws none)."""

    method: str
    samples: int


class ConditionalModel(TrainedModel):
    """A model of the target (x, or y) given the other, built from the data's spec."""

    # What tools need to know about a model is declared here, as class data; no tool tests a model's name.
    #: what the likelihood is over, i.e. what the model generates: "x" (images, given a condition) or "y" (given x)
    target_name: str = "x"
    #: whether p(x|z, ...) sees the condition, so that one z decodes with other labels (analogy and editing grids)
    decoder_sees_condition: bool = True
    #: whether classifier mode (predict_proba) is defined (for class labels)
    classifies: bool = True
    #: classifier-mode methods, each with its default number of samples (0: it draws none); the first is the default
    classifier_methods: dict[str, int] = {}
    #: how tables and figures name the model (e.g. "CVAE-1"); a class that sets none is named by its class name in
    #: lower case (its registry key for a model of the package; set by ``__init_subclass__``)
    display_name: str = "conditionalmodel"
    #: one of the zoo's conditional VAEs, run by every end-to-end test; False for the yardsticks and variants
    zoo: bool = True
    #: whether the model has a latent z with a posterior q(z|x,y) (a :class:`~cvaezoo.models.bound.ConditionalVAE`)
    has_latent: bool = False
    #: the kinds of condition y the model takes (of CONDITION_KINDS): ("class",) for one that models the label
    condition_kinds: tuple[str, ...] = CONDITION_KINDS

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "display_name" not in cls.__dict__:
            cls.display_name = cls.__name__.lower()

    def __init__(
        self,
        x_shape: Sequence[int],
        y_kind: str = "class",
        y_dim: int = 10,
        net: dict | None = None,
        likelihood: str | None = None,
        likelihood_kwargs: dict | None = None,
        pixel_outlier_weight: float | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        class_prior: Sequence[float] | None = None,
        on_nonfinite: str = "raise",
        compile: bool = False,
        pixel_levels: int | None = None,
        allow_grey_bernoulli: bool = False,
        attribute_groups: Sequence[int] | None = None,
        class_names: Sequence[str] | None = None,
    ):  # pragma: no mutate block (mutmut's wrapper would hide the arguments save_hyperparameters reads)
        super().__init__()
        self.save_hyperparameters()  # with the arguments of every subclass's __init__
        check_positive(y_dim=y_dim, lr=lr)
        if on_nonfinite not in NONFINITE_POLICIES:
            raise UserError(f"model.on_nonfinite must be one of {list(NONFINITE_POLICIES)}, got {on_nonfinite!r}")
        if y_kind not in CONDITION_KINDS:
            raise UserError(f"y_kind must be one of {list(CONDITION_KINDS)}, got {y_kind!r}")
        if y_kind not in self.condition_kinds:
            raise UserError(f"{self.model_name} models the label: it needs class labels, but the data's y is a {y_kind}")
        self.x_shape = tuple(int(s) for s in x_shape)
        if len(self.x_shape) == 0 or any(s <= 0 for s in self.x_shape):
            raise UserError(f"x_shape must be a non-empty list of positive sizes, got {list(x_shape)}")
        self.y_kind, self.y_dim = y_kind, int(y_dim)
        self.net_config = NetConfig.from_dict(net)
        self.pixel_levels = pixel_levels  # distinct values of the data's pixels (from the data module); None: unknown
        self.attribute_groups = list(attribute_groups) if attribute_groups else None  # multi-hot y: its group sizes
        self.class_names = list(class_names) if class_names else None  # names of the classes or attributes, if known
        self.likelihood_name = likelihood or self.default_likelihood(y_kind, pixel_levels)
        self._check_likelihood()
        likelihood_of_target = build_likelihood(self.likelihood_name, **(likelihood_kwargs or {}))
        # a corruption model for pixels: what one pixel can cost is bounded, so that classifier mode's Bayes rule
        # is not decided by which class was surest of a background pixel that noise moved (experiments/noise)
        self.likelihood: Likelihood = with_outliers(likelihood_of_target, pixel_outlier_weight) \
            if self.target_is_pixels else likelihood_of_target
        # the number, not null, goes into checkpoints: a later change of a likelihood's default changes no trained model
        self.hparams.pixel_outlier_weight = getattr(self.likelihood, "weight", 0.0)

        prior = torch.full((self.y_dim,), 1.0 / self.y_dim) if class_prior is None else torch.as_tensor(class_prior)
        if y_kind == "class" and prior.shape != (self.y_dim,):
            raise UserError(f"class_prior must have {self.y_dim} entries, got shape {tuple(prior.shape)}")
        self.register_buffer("log_class_prior", torch.log(prior.float()))
        self.build_graph()
        self.make_metrics()

    # ----- what a model file defines -------------------------------------------------------
    def build_graph(self) -> None:
        """Every network of the model (called once from __init__): here, the model file's own."""
        self.build_networks()

    def build_networks(self) -> None:
        """Create the model file's networks."""
        raise NotImplementedError

    def predictive_log_probs(self, x: Tensor, mode: ClassifierMode) -> Tensor:
        """log p(y|x) for every class, (B, C), by classifier mode ``mode`` (a model that classifies defines it)."""
        raise UserError(f"{self.model_name} has no classifier mode")

    @classmethod
    def default_likelihood(cls, y_kind: str, pixel_levels: int | None = None) -> str:
        """p(target | ...) when ``model.likelihood`` is null: a categorical over class labels, a Bernoulli over
        binary attributes; for pixels, Bernoulli when binary, discretised logistic for 8-bit grey levels,
        continuous Bernoulli otherwise."""
        if cls.target_name == "y" and y_kind != "vector":
            return "categorical" if y_kind == "class" else "bernoulli"
        return pixel_likelihood(pixel_levels)

    def checkpoint_metric(self) -> tuple[str, str]:
        """(metric, "max" or "min") that selects the best checkpoint when the config leaves it to the model."""
        return "val/elbo", "max"

    @property
    def target_is_pixels(self) -> bool:
        return self.target_name == "x" or self.y_kind == "vector"

    def _check_likelihood(self) -> None:
        name = self.likelihood_name
        grey = self.pixel_levels not in (None, 2)
        if name == "bernoulli" and self.target_is_pixels and grey and not self.hparams.allow_grey_bernoulli:
            raise UserError(
                f"model.likelihood=bernoulli is a distribution over binary pixels, but this data has {self.pixel_levels} "
                f"grey levels, so its bound would bound nothing: use model.likelihood=null (here "
                f"{pixel_likelihood(self.pixel_levels)}), continuous_bernoulli or gaussian, or binarize the data "
                "(data.binarize=dynamic or threshold); model.allow_grey_bernoulli=true keeps the unnormalised BCE"
            )
        if self.target_name == "y" and (self.y_kind == "class") != (name == "categorical"):
            needed = "categorical" if self.y_kind == "class" else "bernoulli or gaussian"
            raise UserError(f"{self.model_name} with y_kind={self.y_kind!r} needs model.likelihood={needed}, got {name!r}")
        if self.target_name == "x" and name == "categorical":
            raise UserError(f"{self.model_name} models images x: model.likelihood=categorical is for class labels")

    # ----- building blocks for model files -------------------------------------------------
    def encoder(self, x_shape: Sequence[int], cond_dim: int) -> tuple[Encoder, int]:
        enc = Encoder(x_shape, cond_dim, self.net_config)
        return enc, enc.out_dim

    def decoder(self, in_dim: int, out_shape: Sequence[int]) -> Decoder:
        channels = int(out_shape[0])
        return Decoder(in_dim, out_shape, self.likelihood.param_channels(channels), self.net_config,
                       constant_channels=self.likelihood.constant_channels(channels))

    def condition_mlp(self, in_dim: int) -> tuple[nn.Module, int]:
        return mlp(in_dim, self.net_config.hidden, self.net_config.activation), int(self.net_config.hidden[-1])

    # ----- inputs ---------------------------------------------------------------------------
    @property
    def condition_dim(self) -> int:
        """Width of the encoded condition c that the networks receive."""
        return self.y_dim

    def encode_condition(self, y: Tensor) -> Tensor:
        """Class indices -> one-hot; multi-hot attribute vectors (or other vectors) pass through as floats."""
        if self.y_kind == "class":
            if y.dim() != 1:
                raise UserError(f"class labels must have shape (B,), got {tuple(y.shape)}")
            if not self.training and len(y) and (int(y.min()) < 0 or int(y.max()) >= self.y_dim):
                bad = y[(y < 0) | (y >= self.y_dim)][:5].tolist()
                raise UserError(f"class labels must lie in [0, {self.y_dim}), got {bad}")
            return F.one_hot(y.long(), self.y_dim).to(self.dtype)
        if y.dim() != 2 or y.shape[1] != self.y_dim:
            raise UserError(f"attribute vectors must have shape (B, {self.y_dim}), got {tuple(y.shape)}")
        return y.to(self.dtype)

    def check_x(self, x: Tensor) -> None:
        """Shape always; finiteness outside training (the data modules check their data once, up front)."""
        if tuple(x.shape[1:]) != self.x_shape:
            raise UserError(f"x must have shape (B, {', '.join(map(str, self.x_shape))}), got {tuple(x.shape)}")
        if not self.training and not bool(torch.isfinite(x).all()):
            raise UserError(f"x contains {int((~torch.isfinite(x)).sum())} non-finite values")

    def bits_per_dim(self, log_likelihood: Tensor | float) -> Tensor | float:
        """A (bound on the) log-likelihood of the target in nats, as -log2 p per dimension."""
        dims = math.prod(self.x_shape) if self.target_name == "x" else self.y_dim
        return -log_likelihood / (dims * math.log(2.0))

    # ----- classifier mode -------------------------------------------------------------------
    def classifier_mode(self, method: str | None = None, samples: int | None = None) -> ClassifierMode:
        """The model's classifier mode with these options: ``method`` (default: the first of the model's
        ``classifier_methods``) and ``samples`` (default: that method's count). An option the model does not
        take is an error, not ignored: an unknown method, or a sample count for a method that draws none."""
        methods = self.classifier_methods
        if not self.classifies or not methods:
            raise UserError(f"{self.model_name} does not classify: it has no classifier mode")
        if self.y_kind != "class":
            raise UserError(f"{self.model_name} on {self.y_kind} conditions has no classifier mode (it is for class "
                            "labels; use sample(x, n) for other outputs)")
        method = next(iter(methods)) if method is None else method
        if method not in methods:
            raise UserError(f"method {method!r}: {self.model_name} classifies with method "
                            f"{' or '.join(map(repr, methods))}")
        if samples is not None and not methods[method]:
            raise UserError(f"samples={samples} does not apply: {self.model_name}'s method {method!r} draws no samples")
        if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int) or samples < 1):
            raise UserError(f"samples must be a positive integer, got {samples!r}")
        return ClassifierMode(method, methods[method] if samples is None else samples)

    def log_predictive(self, x: Tensor, method: str | None = None, samples: int | None = None) -> Tensor:
        """log p(y|x), (B, C), differentiable in x (the attacks use it), by the classifier mode of these
        options (:meth:`classifier_mode`)."""
        return self.predictive_log_probs(x, self.classifier_mode(method, samples))

    @torch.no_grad()
    def predict_proba(self, x: Tensor, method: str | None = None, samples: int | None = None) -> Tensor:
        """p(y|x), (B, C): classifier mode (:meth:`classifier_mode` gives the options and their defaults)."""
        return self.log_predictive(x, method, samples).exp()

    @torch.no_grad()
    def classify(self, x: Tensor, method: str | None = None, samples: int | None = None) -> Tensor:
        """The most probable class for each x, (B,)."""
        return self.predict_proba(x, method, samples).argmax(dim=-1)


def check_positive(**values: float) -> None:
    for key, value in values.items():
        if value <= 0:
            raise UserError(f"model.{key} must be > 0, got {value}")
