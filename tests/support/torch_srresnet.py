"""An independent PyTorch SRResNet (Ledig et al. 2017, with ReLU in the residual block as EDSR's
Fig. 2 draws it), built from nn.Conv2d / nn.BatchNorm2d / nn.PReLU / nn.PixelShuffle, and its
weights as the Flax variables of ``edsr_jax.models.SRResNet``. NCHW tensors in [0, 255].

    from support.torch_srresnet import TorchSRResNet, flax_variables
    net = TorchSRResNet(scale=2, num_blocks=1, num_features=8).eval()
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)
RGB_RANGE = 255.0


class Block(nn.Module):
    """``x + bn2(conv2(relu(bn1(conv1(x)))))``."""

    def __init__(self, f: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(f, f, 3, padding=1), nn.BatchNorm2d(f)
        self.conv2, self.bn2 = nn.Conv2d(f, f, 3, padding=1), nn.BatchNorm2d(f)

    def forward(self, x):
        return x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))


class TorchSRResNet(nn.Module):
    """Head 9x9 + PReLU, blocks, conv + BN with the long skip, (conv, shuffle, PReLU) stages, 9x9 tail."""

    def __init__(self, scale: int, num_blocks: int, num_features: int):
        super().__init__()
        f = num_features
        self.head, self.head_act = nn.Conv2d(3, f, 9, padding=4), nn.PReLU()
        self.blocks = nn.ModuleList(Block(f) for _ in range(num_blocks))
        self.body_end, self.body_end_bn = nn.Conv2d(f, f, 3, padding=1), nn.BatchNorm2d(f)
        factors = (2, 2) if scale == 4 else (scale,)
        self.up_convs = nn.ModuleList(nn.Conv2d(f, r * r * f, 3, padding=1) for r in factors)
        self.up_shuffles = nn.ModuleList(nn.PixelShuffle(r) for r in factors)
        self.up_acts = nn.ModuleList(nn.PReLU() for _ in factors)
        self.tail = nn.Conv2d(f, 3, 9, padding=4)
        self.register_buffer("mean", RGB_RANGE * torch.tensor(DIV2K_RGB_MEAN).view(1, 3, 1, 1))

    def forward(self, x):
        x = self.head_act(self.head(x - self.mean))
        y = x
        for block in self.blocks:
            y = block(y)
        x = x + self.body_end_bn(self.body_end(y))
        for conv, shuffle, act in zip(self.up_convs, self.up_shuffles, self.up_acts, strict=True):
            x = act(shuffle(conv(x)))
        return self.tail(x) + self.mean


def randomize_(net: nn.Module, seed: int) -> nn.Module:
    """Random batch-norm affine parameters, running statistics and PReLU slopes (convs keep theirs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) - 0.5)
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
            elif isinstance(m, nn.PReLU):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.5)
    return net


def _conv(c: nn.Conv2d) -> dict:
    w = c.weight.detach().numpy()
    return {"kernel": np.ascontiguousarray(w.transpose(2, 3, 1, 0)), "bias": c.bias.detach().numpy()}


def _bn(b: nn.BatchNorm2d) -> tuple[dict, dict]:
    params = {"scale": b.weight.detach().numpy(), "bias": b.bias.detach().numpy()}
    return params, {"mean": b.running_mean.numpy().copy(), "var": b.running_var.numpy().copy()}


def _prelu(a: nn.PReLU) -> dict:
    return {"negative_slope": np.asarray(a.weight.detach().numpy()[0])}


def flax_variables(net: TorchSRResNet) -> dict:
    """``{"params", "batch_stats"}`` of the Flax SRResNet with ``net``'s weights (OIHW -> HWIO)."""
    params = {"head": _conv(net.head), "head_act": _prelu(net.head_act), "body_end": _conv(net.body_end)}
    stats = {}
    params["body_end_bn"], stats["body_end_bn"] = _bn(net.body_end_bn)
    for i, block in enumerate(net.blocks):
        p, s = {"conv1": _conv(block.conv1), "conv2": _conv(block.conv2)}, {}
        p["bn1"], s["bn1"] = _bn(block.bn1)
        p["bn2"], s["bn2"] = _bn(block.bn2)
        params[f"block_{i}"], stats[f"block_{i}"] = p, s
    up = {}
    for k, (conv, act) in enumerate(zip(net.up_convs, net.up_acts, strict=True)):
        up[f"conv_{k}"], up[f"act_{k}"] = _conv(conv), _prelu(act)
    params["upsample"], params["tail"] = up, _conv(net.tail)
    return {"params": params, "batch_stats": stats}
