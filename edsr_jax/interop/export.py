"""A trained model in deployable formats: StableHLO, SavedModel, TFLite, ONNX, PyTorch, safetensors.

Graphs take and return float32 images in [0, 255] of any size (NHWC; ONNX: NCHW), unclipped.
``torch`` writes the official ``state_dict``, so EDSR-PyTorch's ``--pre_train`` loads it.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable

import numpy as np

from edsr_jax import atomic, overwrite
from edsr_jax.checkpoint import layout
from edsr_jax.errors import UserError

FORMATS = ("stablehlo", "savedmodel", "tflite", "onnx", "torch", "safetensors")
# Formats holding every scale of an MDSR in one file.
WEIGHT_FORMATS = ("torch", "safetensors")
# The extension of each format's output when the given path has none.
EXTENSIONS = {
    "stablehlo": ".stablehlo",
    "savedmodel": "",
    "tflite": ".tflite",
    "onnx": ".onnx",
    "torch": ".pt",
    "safetensors": ".safetensors",
}
# Platforms a StableHLO export is lowered for.
STABLEHLO_PLATFORMS = ("cpu", "cuda", "tpu")
EXTRA_HINT = 'pip install "edsr-jax[export]"'


def _need(module: str, what: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"exporting {what} needs {module.split('.')[0]}: {EXTRA_HINT}") from None


def forward_fn(model, variables: dict, scale: int) -> Callable:
    """The exported function: ``(N, H, W, 3) float32 in [0, 255] -> (N, sH, sW, 3) float32``."""
    import jax.numpy as jnp

    return lambda x: model.apply(variables, jnp.asarray(x, jnp.float32), scale=scale).astype(jnp.float32)


def output_paths(out: str, fmt: str, scales: tuple[int, ...]) -> dict[int | None, str]:
    """``{scale: path}`` of what :func:`export_model` writes (``{None: path}`` for one file)."""
    base, ext = os.path.splitext(out)
    if fmt == "savedmodel":
        base, ext = out.rstrip(os.sep), ""
    ext = ext or EXTENSIONS[fmt]
    if fmt in WEIGHT_FORMATS or len(scales) == 1:
        return {None: base + ext}
    return {s: f"{base}_x{s}{ext}" for s in scales}


def check_outputs(out: str, fmt: str, scales: tuple[int, ...], *, force: bool = False) -> dict:
    """``{scale: path}`` of what :func:`export_model` would write, each checked by :mod:`edsr_jax.overwrite`.

    Raises:
      UserError: an unknown format, or an output that may not be written.
    """
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    paths = output_paths(out, fmt, scales)
    for path in paths.values():
        if fmt == "savedmodel":
            overwrite.check_folder(path, layout.SAVEDMODEL, force=force)
        else:
            overwrite.check_file(path, force=force)
    return paths


def export_model(
    model, variables: dict, out: str, fmt: str, *, force: bool = False, fp16: bool = False
) -> list[str]:
    """Writes ``model`` in format ``fmt`` to ``out``, atomically; returns the paths written.

    Raises:
      UserError: an unknown format, an output that may not be written, ``fp16`` for a format other
        than ONNX, a batch-norm model in a layer-by-layer format, or a missing optional package.
    """
    paths = check_outputs(out, fmt, tuple(model.scales), force=force)
    if fp16 and fmt != "onnx":
        raise UserError(f"fp16 applies to the onnx format, not {fmt}")
    if "batch_stats" in variables and (fmt in WEIGHT_FORMATS or fmt == "onnx"):
        traced = ", ".join(f for f in FORMATS if f not in WEIGHT_FORMATS and f != "onnx")
        raise UserError(
            f"the {fmt} export writes the EDSR/MDSR layout; a batch-norm model ({type(model).__name__}) "
            f"exports as {traced}"
        )
    if fmt in WEIGHT_FORMATS:
        _write_file(paths[None], _weights_bytes(model, variables, fmt))
        return list(paths.values())
    for scale, path in paths.items():
        scale = model.scales[0] if scale is None else scale
        if fmt == "savedmodel":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with atomic.folder(path, overwrite=True) as tmp:
                _write_savedmodel(forward_fn(model, variables, scale), os.fspath(tmp))
                layout.mark_folder(tmp, layout.SAVEDMODEL)
        elif fmt == "onnx":
            _write_file(path, _onnx_bytes(model, variables, scale, fp16))
        else:
            _write_file(path, SERIALISERS[fmt](forward_fn(model, variables, scale)))
    return list(paths.values())


def _write_file(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic.write_bytes(path, data)


def _weights_bytes(model, variables, fmt: str) -> bytes:
    from edsr_jax.interop import torch as torch_interop

    tensors = torch_interop.export_state_dict(model, variables)
    if fmt == "torch":
        torch = _need("torch", "PyTorch state dicts")
        buffer = io.BytesIO()
        torch.save({k: torch.from_numpy(np.array(v)) for k, v in tensors.items()}, buffer)
        return buffer.getvalue()
    return _need("safetensors.numpy", "safetensors files").save(tensors)


def _stablehlo_bytes(fn: Callable) -> bytes:
    import jax
    from jax import export

    shape = export.symbolic_shape("n, h, w, 3")
    exported = export.export(jax.jit(fn), platforms=STABLEHLO_PLATFORMS)(
        jax.ShapeDtypeStruct(shape, np.float32)
    )
    return bytes(exported.serialize())


def _tf_module(fn: Callable):
    tf = _need("tensorflow", "SavedModel, TFLite and ONNX")
    from jax.experimental import jax2tf

    converted = jax2tf.convert(fn, polymorphic_shapes=["(n, h, w, 3)"], with_gradient=False)
    module = tf.Module()
    signature = [tf.TensorSpec([None, None, None, 3], tf.float32, name="lr")]
    module.serve = tf.function(lambda lr: {"sr": converted(lr)}, input_signature=signature, autograph=False)
    return tf, module


def _write_savedmodel(fn: Callable, path: str) -> None:
    tf, module = _tf_module(fn)
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})


def _tflite_bytes(fn: Callable) -> bytes:
    tf, module = _tf_module(fn)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.serve.get_concrete_function()], module
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return bytes(converter.convert())


def _onnx_bytes(model, variables, scale: int, fp16: bool) -> bytes:
    _need("onnx", "ONNX")
    if fp16:
        _need("onnxconverter_common", "fp16 ONNX")
    from edsr_jax.interop import onnx as onnx_graph

    return onnx_graph.build(model, variables, scale, fp16=fp16).SerializeToString()


# The file formats written from the exported function.
SERIALISERS = {"stablehlo": _stablehlo_bytes, "tflite": _tflite_bytes}
