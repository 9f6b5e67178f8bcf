"""The model zoo: one file per model, the shared bound in :mod:`cvaezoo.models.base`."""

from cvaezoo.models.base import ConditionalVAE, ElboTerms
from cvaezoo.models.baseline import Baseline
from cvaezoo.models.cvae1 import CVAE1
from cvaezoo.models.cvae2 import CVAE2
from cvaezoo.models.cvae3 import CVAE3
from cvaezoo.models.cvae4 import CVAE4
from cvaezoo.models.m2 import M2
from cvaezoo.models.vae import VAE

#: the four conditional VAEs of the zoo (the rest: M2, the unconditional VAE and CVAE-3's deterministic baseline)
CVAES = ("cvae1", "cvae2", "cvae3", "cvae4")
MODELS: dict[str, type[ConditionalVAE]] = {"cvae1": CVAE1, "cvae2": CVAE2, "cvae3": CVAE3, "cvae4": CVAE4, "m2": M2, "vae": VAE,
                                         "baseline": Baseline}



def register_model(cls: type[ConditionalVAE]) -> type[ConditionalVAE]:
    """Add a model class to the registry under its name in lower case (what checkpoints record and
    ``load_model`` looks up); usable as a class decorator. Train it with ``model._target_=<module>.<Class>``
    or a ``conf/model/<name>.yaml`` of its own."""
    MODELS[cls.__name__.lower()] = cls
    return cls


__all__ = ["CVAES", "MODELS", "register_model", "ConditionalVAE", "ElboTerms", "CVAE1", "CVAE2", "CVAE3", "CVAE4", "M2", "VAE", "Baseline"]
