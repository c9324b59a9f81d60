"""Model parameters: PyTorch-like init, the JSON architecture spec, path keys and shapes, copying."""

from __future__ import annotations

import functools
import json
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np

from edsr_jax.models.conv import pytorch_bound
from edsr_jax.models.edsr import EDSR, MDSR
from edsr_jax.models.sr_model import SRModel
from edsr_jax.models.srresnet import PRELU_INIT, SRResNet

# The architectures a model spec (and ``config.model.arch``) may name.
ARCHS = ("edsr", "mdsr", "srresnet")
# Side of the dummy LR input used to trace parameter shapes (any size works: convs are 3x3/5x5).
TRACE_LR_SIZE = 8
# Initial values of the variables that are not conv kernels or biases, by leaf name: batch norm
# (scale 1, bias 0; running mean 0, variance 1) and PReLU (PyTorch's slope), as PyTorch starts them.
CONSTANT_INITS = {
    ("params", "scale"): 1.0,
    ("params", "bias"): 0.0,
    ("params", "negative_slope"): PRELU_INIT,
    ("batch_stats", "mean"): 0.0,
    ("batch_stats", "var"): 1.0,
}


def abstract_variables(model: SRModel) -> dict:
    """``model``'s variables as ``jax.ShapeDtypeStruct`` (nothing computed)."""
    x = jax.ShapeDtypeStruct((1, TRACE_LR_SIZE, TRACE_LR_SIZE, 3), jnp.float32)
    return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, scale=model.scales[0]), x)


def _is_conv_leaf(flat: dict, path: tuple) -> bool:
    """A conv's ``kernel`` or ``bias``: a leaf of ``params`` beside a 4-D ``kernel``."""
    kernel = flat.get((*path[:-1], "kernel"))
    return path[0] == "params" and kernel is not None and len(kernel.shape) == 4


def init(model: SRModel, rng: jax.Array) -> dict:
    """``model``'s variables initialised as PyTorch does (batch norm and PReLU: ``CONSTANT_INITS``).

    Equal in distribution to ``model.init``, but one uniform draw scaled per tensor, which compiles
    much faster (RESULTS.md "Model speed").
    """
    flat = flax.traverse_util.flatten_dict(abstract_variables(model))
    bounds = {}
    for path in flat:
        if _is_conv_leaf(flat, path):  # a bias takes the fan_in of its conv's kernel
            bounds[path] = pytorch_bound(int(np.prod(flat[(*path[:-1], "kernel")].shape[:-1])))
        elif (path[0], path[-1]) not in CONSTANT_INITS:
            raise ValueError(f"init does not know how to start the variable {path_key(path)}")
    total = sum(int(np.prod(flat[path].shape)) for path in bounds)
    draws = jax.random.uniform(rng, (total,), jnp.float32, -1.0, 1.0)
    variables, offset = {}, 0
    for path, leaf in flat.items():
        if path not in bounds:
            variables[path] = jnp.full(leaf.shape, CONSTANT_INITS[(path[0], path[-1])], leaf.dtype)
            continue
        size = int(np.prod(leaf.shape))
        value = draws[offset : offset + size].reshape(leaf.shape) * bounds[path]
        variables[path] = value.astype(leaf.dtype)
        offset += size
    return flax.traverse_util.unflatten_dict(variables)


def count_params(params: Any) -> int:
    """Number of scalars in a parameter tree."""
    return int(sum(np.prod(p.shape) for p in jax.tree_util.tree_leaves(params)))


def model_spec(model: SRModel) -> dict:
    """A JSON-able description of the architecture (no dtypes); inverse of :func:`from_spec`."""
    size = {"num_blocks": int(model.num_blocks), "num_features": int(model.num_features)}
    if isinstance(model, SRResNet):
        return {"arch": "srresnet", "scale": int(model.scale), **size}
    spec = {**size, "res_scale": float(model.res_scale)}
    if isinstance(model, EDSR):
        return {"arch": "edsr", "scale": int(model.scale), **spec}
    return {"arch": "mdsr", "scales": [int(s) for s in model.scales], **spec}


def from_spec(spec: dict, **kwargs) -> SRModel:
    """Builds a model from :func:`model_spec` output; ``kwargs`` sets e.g. ``dtype``.

    Raises:
      ValueError: an unknown architecture.
      KeyError, TypeError: a spec without the fields of its architecture.
    """
    arch = spec.get("arch")
    if arch == "srresnet":
        return SRResNet(
            scale=int(spec["scale"]),
            num_blocks=int(spec["num_blocks"]),
            num_features=int(spec["num_features"]),
            **kwargs,
        )
    common = dict(
        num_blocks=int(spec["num_blocks"]),
        num_features=int(spec["num_features"]),
        res_scale=float(spec.get("res_scale", 1.0)),
        **kwargs,
    )
    if arch == "edsr":
        return EDSR(scale=int(spec["scale"]), **common)
    if arch == "mdsr":
        return MDSR(scales=tuple(int(s) for s in spec["scales"]), **common)
    raise ValueError(f"unknown architecture {arch!r} in model spec (expected one of {ARCHS})")


def path_key(path: tuple) -> str:
    """``block_0/conv1/kernel`` for a ``jax.tree_util`` key path (or a tuple of names)."""
    return "/".join(str(getattr(p, "key", p)) for p in path)


def flat_params(tree: Any) -> dict[str, Any]:
    """``{"block_0/conv1/kernel": leaf, ...}`` for a nested-dict parameter tree."""
    return {path_key(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def param_shapes(model: SRModel) -> dict[str, tuple[int, ...]]:
    """``{"block_0/conv1/kernel": shape, ...}`` for ``model``, computed without running it."""
    return dict(_param_shapes_of_spec(json.dumps(model_spec(model), sort_keys=True)))


@functools.lru_cache(maxsize=32)
def _param_shapes_of_spec(spec_json: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """Cached by spec: tracing a deep model (MDSR B80) is slow."""
    abstract = abstract_variables(from_spec(json.loads(spec_json)))["params"]
    return tuple((k, tuple(int(d) for d in v.shape)) for k, v in flat_params(abstract).items())


def copy_matching(target: Any, source: Any) -> tuple[Any, list[str], list[str]]:
    """``(target with every same-path, same-shape source tensor copied in, copied paths, other paths)``."""
    flat_source = flat_params(source)
    copied, not_copied = [], []

    def pick(path, leaf):
        key = path_key(path)
        other = flat_source.get(key)
        if other is not None and tuple(other.shape) == tuple(leaf.shape):
            copied.append(key)
            return np.asarray(jax.device_get(other), np.float32)
        not_copied.append(key)
        return leaf

    return jax.tree_util.tree_map_with_path(pick, target), copied, not_copied


def fold_residual_scaling(model: SRModel, variables: dict) -> tuple[SRModel, dict]:
    """``(model with res_scale 1, variables)`` with the residual scale folded into each ``conv2``.

    The paper's test-time trick; equal in output up to float rounding (SRResNet: returned as is).
    """
    rs = float(getattr(model, "res_scale", 1.0))
    if rs == 1.0:
        return model, variables
    params = dict(variables["params"])
    for name in list(params):
        if name.startswith("block_"):
            block = dict(params[name])
            block["conv2"] = {k: v * jnp.asarray(rs, v.dtype) for k, v in block["conv2"].items()}
            params[name] = block
    return model.clone(res_scale=1.0), {**variables, "params": params}
