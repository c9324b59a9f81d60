"""An independent PyTorch EDSR/MDSR with the official module structure and state-dict key names.

Written for the converter tests and the speed benchmarks; it follows the official EDSR-PyTorch
layout (``head``/``body``/``tail``, ``pre_process``/``upsample`` for MDSR, ``MeanShift`` convs),
so ``model.state_dict()`` has exactly the keys of the official ``.pt`` files. Inputs and outputs
are NCHW float tensors in [0, 255].

Import it as a helper module (``sys.path`` must contain ``tests/``, which pytest arranges)::

    from support.torch_reference import build_model, randomize_
    net = randomize_(build_model("edsr", 2, num_blocks=2, num_features=8), seed=0)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

# DIV2K mean RGB as fractions of rgb_range, and the range the official weights assume.
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)
RGB_RANGE = 255.0


def conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Conv2d:
    """The official ``default_conv``: stride 1, padding k // 2, with bias."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=True)


class MeanShift(nn.Conv2d):
    """A fixed 1x1 conv: weight ``eye(3) / std``, bias ``sign * rgb_range * mean / std`` (the official
    MeanShift; std 1 by default); its tensors are in the state dict."""

    def __init__(self, sign: float, rgb_range: float = RGB_RANGE, rgb_std: Sequence[float] = (1.0, 1.0, 1.0)):
        super().__init__(3, 3, kernel_size=1)
        std = torch.tensor(rgb_std, dtype=torch.float32)
        with torch.no_grad():
            self.weight.copy_(torch.eye(3).view(3, 3, 1, 1) / std.view(3, 1, 1, 1))
            self.bias.copy_(sign * rgb_range * torch.tensor(DIV2K_RGB_MEAN) / std)
        for p in self.parameters():
            p.requires_grad = False


class ResBlock(nn.Module):
    """``x + res_scale * body(x)`` with ``body = [conv, ReLU, conv]`` (keys body.0, body.2)."""

    def __init__(self, features: int, kernel_size: int, res_scale: float = 1.0):
        super().__init__()
        self.body = nn.Sequential(
            conv(features, features, kernel_size), nn.ReLU(True), conv(features, features, kernel_size)
        )
        self.res_scale = res_scale

    def forward(self, x):
        return x + self.body(x).mul(self.res_scale)


class Upsampler(nn.Sequential):
    """x2/x3: conv to r*r*F then PixelShuffle(r); x4: two x2 stages (keys 0, 2 for the convs)."""

    def __init__(self, scale: int, features: int):
        layers = []
        if scale in (2, 4):
            for _ in range({2: 1, 4: 2}[scale]):
                layers += [conv(features, 4 * features, 3), nn.PixelShuffle(2)]
        elif scale == 3:
            layers += [conv(features, 9 * features, 3), nn.PixelShuffle(3)]
        else:
            raise ValueError(f"scale must be 2, 3 or 4, got {scale}")
        super().__init__(*layers)


def _body(num_blocks: int, features: int, res_scale: float) -> nn.Sequential:
    blocks = [ResBlock(features, 3, res_scale) for _ in range(num_blocks)]
    return nn.Sequential(*blocks, conv(features, features, 3))


class EDSR(nn.Module):
    """sub_mean, head, body (+ global skip), tail = [Upsampler, conv to RGB], add_mean."""

    def __init__(self, scale: int, num_blocks: int, num_features: int, res_scale: float = 1.0):
        super().__init__()
        self.sub_mean = MeanShift(-1.0)
        self.add_mean = MeanShift(1.0)
        self.head = nn.Sequential(conv(3, num_features, 3))
        self.body = _body(num_blocks, num_features, res_scale)
        self.tail = nn.Sequential(Upsampler(scale, num_features), conv(num_features, 3, 3))

    def forward(self, x):
        x = self.head(self.sub_mean(x))
        x = self.body(x) + x
        return self.add_mean(self.tail(x))


class MDSR(nn.Module):
    """Shared trunk, per-scale pre_process (2 ResBlocks, 5x5) and upsample; ``forward(x, idx)``."""

    def __init__(self, scales: Sequence[int], num_blocks: int, num_features: int, res_scale: float = 1.0):
        super().__init__()
        self.scales = tuple(scales)
        self.sub_mean = MeanShift(-1.0)
        self.add_mean = MeanShift(1.0)
        self.head = nn.Sequential(conv(3, num_features, 3))
        self.pre_process = nn.ModuleList(
            [nn.Sequential(ResBlock(num_features, 5), ResBlock(num_features, 5)) for _ in self.scales]
        )
        self.body = _body(num_blocks, num_features, res_scale)
        self.upsample = nn.ModuleList([Upsampler(s, num_features) for s in self.scales])
        self.tail = nn.Sequential(conv(num_features, 3, 3))

    def forward(self, x, scale_index: int = 0):
        x = self.head(self.sub_mean(x))
        x = self.pre_process[scale_index](x)
        x = self.body(x) + x
        return self.add_mean(self.tail(self.upsample[scale_index](x)))


def build_model(arch: str, scale, num_blocks: int, num_features: int, res_scale: float = 1.0) -> nn.Module:
    """Builds the reference model.

    Args:
      arch: "edsr" or "mdsr".
      scale: an int for EDSR; a sequence of scales (official order (2, 3, 4)) for MDSR.
      num_blocks: residual blocks B.
      num_features: feature maps F.
      res_scale: residual scaling of the body blocks.

    Returns:
      The ``nn.Module`` in eval mode.
    """
    if arch == "edsr":
        return EDSR(int(scale), num_blocks, num_features, res_scale).eval()
    if arch == "mdsr":
        scales = (scale,) if isinstance(scale, int) else tuple(scale)
        return MDSR(scales, num_blocks, num_features, res_scale).eval()
    raise ValueError(f"arch must be 'edsr' or 'mdsr', got {arch!r}")


def randomize_(model: nn.Module, seed: int = 0, gain: float = 1.0) -> nn.Module:
    """Re-draws every learned conv weight and bias from U(+-gain/sqrt(fan_in)) (mean shift kept)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d) and not isinstance(module, MeanShift):
                bound = gain / module.weight[0].numel() ** 0.5
                for p in (module.weight, module.bias):
                    p.copy_((torch.rand(p.shape, generator=generator) * 2 - 1) * bound)
    return model


def with_mean_shift(model: nn.Module, rgb_range: float, rgb_std: Sequence[float] = (1.0, 1.0, 1.0)):
    """``model`` built as the official code's ``--rgb_range R`` (and ``rgb_std``) builds it: it then
    takes inputs in [0, R] and gives outputs on that range (:func:`run` still passes [0, 255])."""
    model.sub_mean = MeanShift(-1.0, rgb_range, rgb_std)
    model.add_mean = MeanShift(1.0, rgb_range, rgb_std)
    return model


def run(model: nn.Module, low_res_nhwc, scale_index: int = 0):
    """Applies ``model`` to an NHWC numpy batch in [0, 255]; returns NHWC float32 numpy."""
    x = torch.from_numpy(low_res_nhwc).permute(0, 3, 1, 2).contiguous().float()
    with torch.no_grad():
        y = model(x, scale_index) if isinstance(model, MDSR) else model(x)
    return y.permute(0, 2, 3, 1).numpy()


def save_weights(model: nn.Module, path, wrap: str | None = None) -> None:
    """Saves ``model.state_dict()`` to ``path`` as the official files and common wrappers do.

    Args:
      model: the reference model.
      path: the ``.pt`` file to write.
      wrap: None (a plain state dict), ``"module."`` (DataParallel key prefix) or a wrapper key
        such as ``"state_dict"`` or ``"model"`` (``{wrap: state_dict, "epoch": 3}``).
    """
    state = model.state_dict()
    if wrap == "module.":
        state = {f"module.{k}": v for k, v in state.items()}
    elif wrap:
        state = {wrap: state, "epoch": 3}
    torch.save(state, path)


# (arch, scale, num_blocks, num_features, res_scale, wrapper) of the conversions the tests check:
# every upsampler, residual scaling, MDSR, and the checkpoint wrappers users' files come in.
CONVERSIONS = [
    ("edsr", 2, 2, 8, 1.0, None),
    ("edsr", 3, 2, 8, 1.0, "state_dict"),
    ("edsr", 4, 1, 8, 1.0, "model"),
    ("edsr", 2, 3, 16, 0.1, None),
    ("mdsr", (2, 3, 4), 2, 8, 1.0, "module."),
]


def randomized(arch: str, scale, num_blocks: int, num_features: int, res_scale: float = 1.0, seed: int = 0):
    """:func:`build_model` with :func:`randomize_` weights."""
    return randomize_(build_model(arch, scale, num_blocks, num_features, res_scale), seed)
