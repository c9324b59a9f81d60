"""``SRModel``: the type of every network of the package. This module imports only the models."""

from edsr_jax.models.edsr import EDSR, MDSR
from edsr_jax.models.srresnet import SRResNet

# Any network of the package: what init, model_spec, the trainer and the upscaler take.
SRModel = EDSR | MDSR | SRResNet
