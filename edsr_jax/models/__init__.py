"""EDSR, MDSR and SRResNet as Flax modules, importing only jax, flax and numpy: the public model API.

``model = models.edsr_baseline(scale=2)``; ``variables = models.init(model, jax.random.key(0))``;
``sr = model.apply(variables, low_res_images)`` (NHWC float in [0, 255]).
"""

from edsr_jax.models.conv import Conv, conv2d, pytorch_bound
from edsr_jax.models.edsr import (
    DIV2K_RGB_MEAN,
    EDSR,
    MDSR,
    RGB_RANGE,
    SUPPORTED_SCALES,
    ResBlock,
    Upsampler,
    edsr,
    edsr_baseline,
    mdsr,
    mdsr_baseline,
    pixel_shuffle,
)
from edsr_jax.models.params import (
    ARCHS,
    abstract_variables,
    copy_matching,
    count_params,
    flat_params,
    fold_residual_scaling,
    from_spec,
    init,
    model_spec,
    param_shapes,
    path_key,
)
from edsr_jax.models.sr_model import SRModel
from edsr_jax.models.srresnet import SRResNet, receptive_radius, srresnet

__all__ = [
    "ARCHS",
    "abstract_variables",
    "DIV2K_RGB_MEAN",
    "EDSR",
    "MDSR",
    "RGB_RANGE",
    "SUPPORTED_SCALES",
    "Conv",
    "ResBlock",
    "SRModel",
    "SRResNet",
    "Upsampler",
    "conv2d",
    "copy_matching",
    "count_params",
    "edsr",
    "edsr_baseline",
    "flat_params",
    "fold_residual_scaling",
    "from_spec",
    "init",
    "mdsr",
    "mdsr_baseline",
    "model_spec",
    "param_shapes",
    "path_key",
    "pixel_shuffle",
    "pytorch_bound",
    "receptive_radius",
    "srresnet",
]
