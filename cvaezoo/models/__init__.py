"""The model zoo: one file per model; the bound in :mod:`cvaezoo.models.bound`, the training loop in
:mod:`cvaezoo.models.training`.

The registry is derived, not kept: every module of this package that defines a model class (a
:class:`ConditionalModel` that implements ``build_networks``) registers it under the module's name, which is also
the name of its config, ``conf/model/<name>.yaml``, and what its checkpoints record. Adding a model is its file
and its config. A model defined elsewhere joins with :func:`register_model`.
"""

from __future__ import annotations

import importlib
import pkgutil

from cvaezoo.models.bound import ConditionalVAE
from cvaezoo.models.conditional import ClassifierMode, ConditionalModel
from cvaezoo.models.training import ElboTerms

MODELS: dict[str, type[ConditionalModel]] = {}


def register_model(cls: type[ConditionalModel], name: str | None = None) -> type[ConditionalModel]:
    """Add a model class to the registry under ``name`` (default: its class name in lower case), what checkpoints
    record and ``load_model`` looks up; usable as a class decorator. Train it with ``model._target_=<module>.<Class>``
    or a ``conf/model/<name>.yaml`` of its own."""
    name = name or cls.__name__.lower()
    if MODELS.get(name, cls) is not cls:
        raise ValueError(f"model name {name!r} is taken by {MODELS[name].__module__}.{MODELS[name].__qualname__}")
    cls.registry_name = name
    MODELS[name] = cls
    return cls


def is_model_class(value: object) -> bool:
    """A concrete model: a ConditionalModel subclass with its own networks (the bases define none)."""
    return (isinstance(value, type) and issubclass(value, ConditionalModel)
            and value.build_networks is not ConditionalModel.build_networks)


def _register_package_models() -> None:
    """Each model file's class under the file's name: the zoo's models first, then the yardsticks and variants,
    each by name (the order tables list them in)."""
    found: dict[str, type[ConditionalModel]] = {}
    for module_info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        defined = [value for value in vars(module).values()
                   if is_model_class(value) and value.__module__ == module.__name__]
        if len(defined) > 1:
            raise ImportError(f"{module.__name__} defines {len(defined)} models; one file holds one model")
        if defined:
            found[module_info.name] = defined[0]
    for name in sorted(found, key=lambda name: (not found[name].zoo, name)):
        register_model(found[name], name)


_register_package_models()

from cvaezoo.models.baseline import Baseline  # noqa: E402  (the built-in models by class, for the Python API)
from cvaezoo.models.cvae1 import CVAE1  # noqa: E402
from cvaezoo.models.cvae2 import CVAE2  # noqa: E402
from cvaezoo.models.cvae3 import CVAE3  # noqa: E402
from cvaezoo.models.cvae4 import CVAE4  # noqa: E402
from cvaezoo.models.m2 import M2  # noqa: E402
from cvaezoo.models.vae import VAE  # noqa: E402

#: the zoo's conditional VAEs, the models every end-to-end test runs: those that declare ``zoo`` (not the
#: yardsticks and variants: the unconditional VAE, CVAE-3's deterministic NN, M2)
CVAES = tuple(name for name, cls in MODELS.items() if cls.zoo)

__all__ = ["CVAES", "MODELS", "register_model", "is_model_class", "ConditionalModel", "ConditionalVAE",
           "ClassifierMode", "ElboTerms", "CVAE1", "CVAE2", "CVAE3", "CVAE4", "M2", "VAE", "Baseline"]
