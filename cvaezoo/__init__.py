"""cvaezoo: the four conditional VAEs (CVAE-1..4) as Lightning modules, composed with Hydra."""

from cvaezoo.models import CVAE1, CVAE2, CVAE3, CVAE4, MODELS, ConditionalModel, ConditionalVAE

__version__ = "0.1.0"

__all__ = ["MODELS", "ConditionalModel", "ConditionalVAE", "CVAE1", "CVAE2", "CVAE3", "CVAE4", "__version__"]
