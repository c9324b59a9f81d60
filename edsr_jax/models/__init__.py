"""EDSR, MDSR and SRResNet as Flax modules, importable alone (this folder imports only jax, flax, numpy).

``edsr.py`` holds the layers, the two networks and the presets; ``srresnet.py`` SRResNet (its
variables add ``batch_stats``) and ``receptive_radius``; ``sr_model.py`` the ``SRModel`` type;
``conv.py`` the one convolution they use (a CPU-fast gradient); ``params.py`` initialisation, the
architecture spec and parameter paths. ``edsr_jax.models`` is the package's public model API::

    from edsr_jax import models

    model = models.edsr_baseline(scale=2)
    variables = models.init(model, jax.random.key(0))
    sr = model.apply(variables, low_res_images)     # NHWC float in [0, 255]
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
