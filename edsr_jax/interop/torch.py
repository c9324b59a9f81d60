"""Official EDSR-PyTorch and BasicSR state dicts to edsr-jax models, and back.

The architecture is inferred from key names and shapes; kernels go OIHW <-> HWIO. A non-standard
``rgb_range``/``rgb_std`` is folded into the head and tail convs, as our mean shifts are constants.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from edsr_jax import models
from edsr_jax.errors import UserError, listing
from edsr_jax.interop import torch_file

# Keys of common checkpoint wrappers around a state dict, tried in this order.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "params_ema", "params", "net")
# Key prefixes added by wrappers (DataParallel, the official trainer's Model), stripped if on every key.
STRIP_PREFIXES = ("module.", "model.")
# The official res_scale: 0.1 for the full EDSR only.
FULL_EDSR_MIN_FEATURES = 256
FULL_EDSR_RES_SCALE = 0.1
# The official mean-shift layers (rgb_range 255, std 1) that our models hard-code.
MEAN_SHIFT_SIGNS = {"sub_mean": -1.0, "add_mean": 1.0}
# Tolerances on a file's mean-shift weights (off-diagonal) and on the rgb_range read back.
MEAN_SHIFT_ATOL = 1e-3
MEAN_SHIFT_RTOL = 1e-4

# Other super-resolution networks, told apart by a key only they have: (name, regex over the keys).
OTHER_ARCHITECTURES = (
    ("ESRGAN's RRDBNet (BasicSR, Real-ESRGAN)", r"\brdb1\.|\bRRDB_trunk\."),
    ("SwinIR", r"\.residual_group\."),
    ("RCAN", r"\.conv_du\."),
    ("BasicSR's MSRResNet (SRResNet)", r"\bupconv1\."),
)

_LEAF_TO_TORCH = {"kernel": "weight", "bias": "bias"}


def load_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The state dict of a PyTorch file as float32 numpy arrays (see :func:`load_torch_checkpoint`)."""
    return load_torch_checkpoint(path)[0]


def load_torch_checkpoint(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], str | None]:
    """``({key: OIHW array}, wrapper)`` of a PyTorch state dict file, read without PyTorch.

    ``wrapper`` is the :data:`WRAPPER_KEYS` key the dict was under, or None. UserError if unreadable.
    """
    obj = torch_file.read(path)
    found = _find_state_dict(obj)
    if found is None:
        raise UserError(f"{os.fspath(path)} does not hold a state dict of tensors (found {_describe(obj)})")
    state_dict, wrapper = found
    return {key: np.asarray(value, np.float32) for key, value in _strip_prefixes(state_dict).items()}, wrapper


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items())
    )


def _find_state_dict(obj: Any) -> tuple[dict, str | None] | None:
    if _is_state_dict(obj):
        return obj, None
    if isinstance(obj, dict):
        for key in WRAPPER_KEYS:
            if _is_state_dict(obj.get(key)):
                return obj[key], key
    return None


def _describe(obj: Any) -> str:
    if isinstance(obj, dict):
        if not obj:
            return "an empty dict"
        keys = [str(k) for k in obj]
        bad = [f"{k!r}: {type(v).__name__}" for k, v in obj.items() if not isinstance(v, np.ndarray)]
        return f"a dict with keys {listing(keys)}; non-tensor entries {listing(bad)}"
    return f"a {type(obj).__name__}"


def _strip_prefixes(state_dict: dict) -> dict:
    for prefix in STRIP_PREFIXES:
        if all(k.startswith(prefix) for k in state_dict):
            state_dict = {k[len(prefix) :]: v for k, v in state_dict.items()}
    return state_dict


def infer_spec(state_dict: dict[str, Any]) -> dict:
    """The architecture of an official state dict; UserError if it is not an EDSR/MDSR.

    ``res_scale`` is not in the weights: 0.1 for an EDSR with F >= 256 (the official full EDSR), else 1.0.
    """
    head = state_dict.get("head.0.weight")
    if head is None:
        other = other_architecture(state_dict)
        raise UserError(
            f"not an official EDSR/MDSR state dict: {f'the keys are those of {other}; ' if other else ''}"
            f"no head.0.weight among its keys ({listing(sorted(state_dict))})"
        )
    shape = tuple(head.shape)
    if len(shape) != 4 or shape[1] != 3:
        raise UserError(f"head.0.weight has shape {shape}; expected (F, 3, 3, 3) for an RGB model")
    features = int(shape[0])
    blocks = {int(m.group(1)) for k in state_dict if (m := re.match(r"body\.(\d+)\.body\.", k))}
    num_blocks = len(blocks)
    is_mdsr = any(k.startswith(("pre_process.", "upsample.")) for k in state_dict)
    common = {"num_blocks": num_blocks, "num_features": features}
    if not is_mdsr:
        scale = _upsampler_scale(state_dict, "tail.0", features)
        res_scale = FULL_EDSR_RES_SCALE if features >= FULL_EDSR_MIN_FEATURES else 1.0
        return {"arch": "edsr", "scale": scale, **common, "res_scale": res_scale}
    indices = sorted({int(m.group(1)) for k in state_dict if (m := re.match(r"upsample\.(\d+)\.", k))})
    if indices != list(range(len(indices))) or not indices:
        raise UserError(f"MDSR upsamplers should be upsample.0, upsample.1, ...; found indices {indices}")
    scales = [_upsampler_scale(state_dict, f"upsample.{j}", features) for j in indices]
    if len(set(scales)) != len(scales):
        raise UserError(f"MDSR upsamplers give scales {scales}: each scale may appear only once")
    return {"arch": "mdsr", "scales": scales, **common, "res_scale": 1.0}


def other_architecture(state_dict: dict) -> str | None:
    """The network a state dict that is not an EDSR/MDSR belongs to, when its keys say so."""
    keys = " ".join(state_dict)
    for name, pattern in OTHER_ARCHITECTURES:
        if re.search(pattern, keys):
            return name
    return None


def _upsampler_scale(state_dict: dict, prefix: str, features: int) -> int:
    """Scale of the official Upsampler at ``prefix``: 9F outputs for x3, 4F for x2 (x4 with two stages)."""
    key = f"{prefix}.0.weight"
    if key not in state_dict:
        raise UserError(f"missing the upsampler weight {key} (cannot infer the scale)")
    outputs = int(state_dict[key].shape[0])
    if outputs == 9 * features:
        return 3
    if outputs == 4 * features:
        return 4 if f"{prefix}.2.weight" in state_dict else 2
    raise UserError(
        f"{key} has {outputs} output channels; expected {4 * features} (x2/x4) or {9 * features} (x3) "
        f"for F={features}"
    )


def torch_key(path: str, spec: dict) -> str:
    """The official state-dict key of our parameter ``path`` (e.g. ``block_0/conv1/kernel``)."""
    *modules, leaf = path.split("/")
    suffix = _LEAF_TO_TORCH[leaf]
    top = modules[0]
    scales = list(spec.get("scales", []))
    if top == "head":
        return f"head.0.{suffix}"
    if m := re.fullmatch(r"block_(\d+)", top):
        return f"body.{m.group(1)}.body.{0 if modules[1] == 'conv1' else 2}.{suffix}"
    if top == "body_end":
        return f"body.{spec['num_blocks']}.{suffix}"
    if top == "tail":
        return f"tail.{1 if spec['arch'] == 'edsr' else 0}.{suffix}"
    stage = int(modules[-1].split("_")[1]) if modules[-1].startswith("conv_") else None
    if top == "upsample":
        return f"tail.0.{2 * stage}.{suffix}"
    if m := re.fullmatch(r"upsample_x(\d+)", top):
        return f"upsample.{scales.index(int(m.group(1)))}.{2 * stage}.{suffix}"
    if m := re.fullmatch(r"pre_process_x(\d+)_(\d+)", top):
        j = scales.index(int(m.group(1)))
        return f"pre_process.{j}.{m.group(2)}.body.{0 if modules[1] == 'conv1' else 2}.{suffix}"
    raise ValueError(f"no official key for parameter {path!r}")


def convert_state_dict(state_dict: dict[str, Any], spec: dict | None = None):
    """``(model, {"params": HWIO float32 arrays})`` of an official state dict (spec inferred if None).

    Raises:
      UserError: unknown or missing keys, a shape mismatch, or a mean shift no edsr-jax model computes.
    """
    spec = infer_spec(state_dict) if spec is None else dict(spec)
    model = models.from_spec(spec)
    expected = {
        torch_key(path, spec): (path, _torch_layout(shape))
        for path, shape in models.param_shapes(model).items()
    }
    rgb_range, diagonals = read_mean_shift(state_dict)
    unknown = sorted(k for k in state_dict if k not in expected and k.split(".")[0] not in MEAN_SHIFT_SIGNS)
    if unknown:
        raise UserError(
            f"unknown keys for {describe_spec(spec)}: {listing(unknown)} "
            "(not an official EDSR/MDSR state dict, or a different B/F/scale)"
        )
    missing = sorted(k for k in expected if k not in state_dict)
    if missing:
        raise UserError(f"missing keys for {describe_spec(spec)}: {listing(missing)}")
    params: dict = {}
    for key, (path, torch_shape) in sorted(expected.items()):
        value = np.asarray(state_dict[key], dtype=np.float32)
        if tuple(value.shape) != torch_shape:
            raise UserError(
                f"{key} has shape {tuple(value.shape)} in the file but {describe_spec(spec)} "
                f"needs {torch_shape}"
            )
        _set_path(params, path, value.transpose(2, 3, 1, 0) if value.ndim == 4 else value)
    return model, {"params": fold_mean_shift(params, rgb_range, diagonals)}


def _torch_layout(shape: tuple[int, ...]) -> tuple[int, ...]:
    """HWIO kernel shape -> OIHW; biases unchanged."""
    return (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 else tuple(shape)


def _set_path(tree: dict, path: str, value: np.ndarray) -> None:
    *modules, leaf = path.split("/")
    for name in modules:
        tree = tree.setdefault(name, {})
    tree[leaf] = value


def describe_spec(spec: dict) -> str:
    """``EDSR x2 B16 F64`` or ``MDSR x2/x3/x4 B80 F64`` for a model spec."""
    scales = f"x{spec['scale']}" if spec["arch"] == "edsr" else "/".join(f"x{s}" for s in spec["scales"])
    return f"{spec['arch'].upper()} {scales} B{spec['num_blocks']} F{spec['num_features']}"


def read_mean_shift(state_dict: dict) -> tuple[float, dict[str, np.ndarray]]:
    """The ``rgb_range`` and weight diagonals (``1 / rgb_std``) of the ``sub_mean``/``add_mean`` convs.

    UserError for shifts that are not one ``rgb_range`` times the DIV2K mean.
    """
    mean = np.asarray(models.DIV2K_RGB_MEAN, np.float64)
    ranges, diagonals = {}, {}
    for name, sign in MEAN_SHIFT_SIGNS.items():
        weight = np.asarray(state_dict.get(f"{name}.weight", np.eye(3).reshape(3, 3, 1, 1)), np.float64)
        bias = np.asarray(state_dict.get(f"{name}.bias", sign * models.RGB_RANGE * mean), np.float64)
        for key, value, shape in ((f"{name}.weight", weight, (3, 3, 1, 1)), (f"{name}.bias", bias, (3,))):
            if value.shape != shape:
                raise UserError(f"{key} has shape {value.shape}; the mean shift needs {shape}")
        found = f"{name}.weight {_rounded(weight.reshape(3, 3))} and {name}.bias {_rounded(bias)}"
        diagonal = np.diag(weight.reshape(3, 3))
        if np.abs(weight.reshape(3, 3) - np.diag(diagonal)).max() > MEAN_SHIFT_ATOL or np.any(diagonal <= 0):
            raise UserError(
                f"{found}: not an official MeanShift (weight eye(3) / rgb_std); edsr-jax models shift by "
                "the DIV2K mean only, so this model cannot be converted exactly"
            )
        implied = sign * bias / (diagonal * mean)
        if np.any(implied <= 0) or not np.allclose(implied, implied.mean(), rtol=MEAN_SHIFT_RTOL):
            raise UserError(
                f"{found} imply rgb_range {_rounded(implied)} for R, G, B (rgb_std "
                f"{_rounded(1 / diagonal)}): not one rgb_range times the DIV2K mean {models.DIV2K_RGB_MEAN}; "
                "another mean cannot be converted exactly (it shifts what the zero-padded head conv sees)"
            )
        ranges[name], diagonals[name] = float(implied.mean()), diagonal
    if not np.isclose(ranges["sub_mean"], ranges["add_mean"], rtol=MEAN_SHIFT_RTOL):
        raise UserError(
            f"sub_mean implies rgb_range {ranges['sub_mean']:.4g} but add_mean {ranges['add_mean']:.4g}: "
            "the official code builds both from one rgb_range, so the output's range is unknown"
        )
    if np.isclose(ranges["sub_mean"], models.RGB_RANGE, rtol=MEAN_SHIFT_RTOL) and all(
        np.allclose(d, 1.0, rtol=MEAN_SHIFT_RTOL) for d in diagonals.values()
    ):
        return models.RGB_RANGE, {name: np.ones(3) for name in MEAN_SHIFT_SIGNS}
    return ranges["sub_mean"], diagonals


def _rounded(values: np.ndarray) -> list:
    return np.asarray(values).round(4).tolist()


def fold_mean_shift(params: dict, rgb_range: float, diagonals: dict[str, np.ndarray]) -> dict:
    """Parameters computing on [0, 255] what an official model with this mean shift computes.

    ``sub_mean`` folds into the head's input channels (zero padding stays zero) and ``add_mean`` into the
    tail, so the body sees what it saw in PyTorch: exact up to float32 rounding.
    """
    if rgb_range == models.RGB_RANGE and all(np.all(d == 1.0) for d in diagonals.values()):
        return params
    k = models.RGB_RANGE / rgb_range
    sub, add = diagonals["sub_mean"], diagonals["add_mean"]
    shift = models.RGB_RANGE * np.asarray(models.DIV2K_RGB_MEAN, np.float64) * (add - 1.0)
    head, tail = params["head"], params["tail"]
    return {
        **params,
        "head": {**head, "kernel": (head["kernel"] * (sub / k)[:, None]).astype(np.float32)},
        "tail": {
            "kernel": (tail["kernel"] * (k * add)).astype(np.float32),
            "bias": (tail["bias"] * (k * add) + shift).astype(np.float32),
        },
    }


# BasicSR's EDSR key prefixes -> the official ones (``body.{i}.conv1/2`` handled apart).
_BASICSR_RENAMES = {"conv_first": "head.0", "conv_last": "tail.1"}
# The value range BasicSR's EDSR multiplies its [0, 1] inputs by by default (``img_range``).
BASICSR_IMG_RANGE = 255.0


def is_basicsr(state_dict: dict) -> bool:
    """Whether a state dict has BasicSR's EDSR layout (``conv_first``, ``conv_after_body``, ...)."""
    return "conv_first.weight" in state_dict and "head.0.weight" not in state_dict


def basicsr_to_official(state_dict: dict[str, Any], img_range: float = BASICSR_IMG_RANGE) -> dict[str, Any]:
    """A BasicSR EDSR state dict in the official layout, for inputs and outputs in [0, 255].

    Every layer is affine or ReLU, so scaling the biases by ``255 / img_range`` is exact.
    """
    factor = 255.0 / float(img_range)
    blocks = {int(m.group(1)) for k in state_dict if (m := re.match(r"body\.(\d+)\.conv[12]\.", k))}
    out = {}
    for key, value in state_dict.items():
        module, leaf = key.rsplit(".", 1)
        if module in _BASICSR_RENAMES:
            name = _BASICSR_RENAMES[module]
        elif module == "conv_after_body":
            name = f"body.{len(blocks)}"
        elif m := re.fullmatch(r"body\.(\d+)\.conv([12])", module):
            name = f"body.{m.group(1)}.body.{0 if m.group(2) == '1' else 2}"
        elif m := re.fullmatch(r"upsample\.(\d+)", module):
            name = f"tail.0.{m.group(1)}"
        elif module in MEAN_SHIFT_SIGNS:
            continue
        else:
            other = f": the keys are those of {name}" if (name := other_architecture(state_dict)) else ""
            raise UserError(f"unknown key {key!r} for a BasicSR EDSR checkpoint{other}")
        scaled = (
            np.asarray(value, np.float32) * np.float32(factor) if leaf == "bias" and factor != 1.0 else value
        )
        out[f"{name}.{leaf}"] = scaled
    return out


def export_state_dict(model: models.SRModel, variables: dict) -> dict[str, np.ndarray]:
    """The official state dict of a model (what ``--pre_train`` loads); converts back bit for bit."""
    spec = models.model_spec(model)
    out: dict[str, np.ndarray] = {}
    mean = models.RGB_RANGE * np.asarray(models.DIV2K_RGB_MEAN, np.float32)
    for name, sign in MEAN_SHIFT_SIGNS.items():
        out[f"{name}.weight"] = np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1)
        out[f"{name}.bias"] = (sign * mean).astype(np.float32)
    for path, value in sorted(models.flat_params(variables["params"]).items()):
        value = np.asarray(value, np.float32)
        out[torch_key(path, spec)] = np.ascontiguousarray(
            value.transpose(3, 2, 0, 1) if value.ndim == 4 else value
        )
    return out
