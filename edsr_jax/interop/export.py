"""A trained model in the formats users deploy: StableHLO, SavedModel, TFLite, ONNX, PyTorch,
safetensors.

Every exported graph is the model's forward pass on **NHWC float32 images in [0, 255]**, any
height and width (symbolic in StableHLO, dynamic in SavedModel, TFLite and ONNX), returning NHWC
float32 in about [0, 255] (not clipped or rounded: quantise as :mod:`edsr_jax.imaging.metrics`
does). The weights are constants of the graph (variables in the SavedModel).

* ``stablehlo``: ``jax.export`` serialised (``.stablehlo``), lowered for CPU, CUDA and TPU; reload
  with ``jax.export.deserialize(bytes).call(x)``.
* ``savedmodel``: ``jax2tf`` inside a ``tf.Module`` with one signature ``serving_default``
  (input ``lr``); a folder.
* ``tflite``: the SavedModel converted by ``tf.lite.TFLiteConverter`` (builtin ops only: the
  pixel shuffle is a reshape + transpose, which the interpreter runs); resize the input with
  ``resize_tensor_input``.
* ``onnx``: a graph written from the architecture (:mod:`edsr_jax.interop.onnx`; ``jax2tf``'s
  StableHLO is not something tf2onnx reads), opset 17, **NCHW** (ONNX's and PyTorch's layout),
  dynamic height and width; ``fp16`` computes in float16 with float32 inputs and outputs.
* ``torch``: the official EDSR-PyTorch ``state_dict`` (``.pt``: its key names and OIHW layout, so
  its ``--pre_train`` loads it) and ``safetensors``: the same tensors.

MDSR exports one file (or folder) per scale, named ``<out>_x<s>`` before the extension; the
weight formats (``torch``, ``safetensors``) hold every scale in one file, as the official MDSR.
TensorFlow, onnx, onnxconverter-common, safetensors and torch are imported only by the formats that
need them
(``pip install "edsr-jax[export]"``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

import numpy as np

from edsr_jax.errors import UserError

FORMATS = ("stablehlo", "savedmodel", "tflite", "onnx", "torch", "safetensors")
# Formats holding every scale of an MDSR in one file.
WEIGHT_FORMATS = ("torch", "safetensors")
# The file extension each format's output gets when the given path has none (folders: "").
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
    """``x (N, H, W, 3) float32 in [0, 255] -> (N, sH, sW, 3) float32``: the exported function."""
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


def export_model(
    model, variables: dict, out: str, fmt: str, *, force: bool = False, fp16: bool = False
) -> list[str]:
    """Writes ``model`` in format ``fmt`` to ``out`` (see the module docstring); returns the paths.

    Raises:
      UserError: an unknown format, an output that exists (without ``force``), ``fp16`` for a
        format other than ONNX, a batch-norm model (SRResNet) in a format written layer by layer
        (ONNX, the weight files), or a missing optional package (naming the extra).
    """
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fp16 and fmt != "onnx":
        raise UserError(f"fp16 applies to the onnx format, not {fmt}")
    if "batch_stats" in variables and (fmt in WEIGHT_FORMATS or fmt == "onnx"):
        traced = ", ".join(f for f in FORMATS if f not in WEIGHT_FORMATS and f != "onnx")
        raise UserError(
            f"the {fmt} export writes the EDSR/MDSR layout; a batch-norm model ({type(model).__name__}) "
            f"exports as {traced}"
        )
    paths = output_paths(out, fmt, tuple(model.scales))
    for path in paths.values():
        if os.path.exists(path) and not force:
            raise UserError(f"{path} exists; pass --force to replace it")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if fmt in WEIGHT_FORMATS:
        _write_weights(model, variables, paths[None], fmt)
        return list(paths.values())
    for scale, path in paths.items():
        scale = model.scales[0] if scale is None else scale
        tmp = f"{path}.tmp-{os.getpid()}"
        try:
            if fmt == "onnx":
                _write_onnx(model, variables, scale, tmp, fp16)
            else:
                WRITERS[fmt](forward_fn(model, variables, scale), tmp)
            if os.path.isdir(path):
                shutil.rmtree(path)
            os.replace(tmp, path)
        finally:
            if os.path.isdir(tmp):
                shutil.rmtree(tmp, ignore_errors=True)
            elif os.path.exists(tmp):
                os.unlink(tmp)
    return list(paths.values())


def _write_weights(model, variables, path: str, fmt: str) -> None:
    from edsr_jax.interop import torch as torch_interop

    tensors = torch_interop.export_state_dict(model, variables)
    tmp = f"{path}.tmp-{os.getpid()}"
    if fmt == "torch":
        torch = _need("torch", "PyTorch state dicts")
        torch.save({k: torch.from_numpy(np.array(v)) for k, v in tensors.items()}, tmp)
    else:
        _need("safetensors.numpy", "safetensors files").save_file(tensors, tmp)
    os.replace(tmp, path)


# --- the graph formats -------------------------------------------------------------------------


def _write_stablehlo(fn: Callable, path: str) -> None:
    import jax
    from jax import export

    shape = export.symbolic_shape("n, h, w, 3")
    exported = export.export(jax.jit(fn), platforms=STABLEHLO_PLATFORMS)(
        jax.ShapeDtypeStruct(shape, np.float32)
    )
    with open(path, "wb") as f:
        f.write(exported.serialize())


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


def _write_tflite(fn: Callable, path: str) -> None:
    tf, module = _tf_module(fn)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.serve.get_concrete_function()], module
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    with open(path, "wb") as f:
        f.write(converter.convert())


def _write_onnx(model, variables, scale: int, path: str, fp16: bool) -> None:
    onnx = _need("onnx", "ONNX")
    if fp16:
        _need("onnxconverter_common", "fp16 ONNX")
    from edsr_jax.interop import onnx as onnx_graph

    onnx.save(onnx_graph.build(model, variables, scale, fp16=fp16), path)


WRITERS = {"stablehlo": _write_stablehlo, "savedmodel": _write_savedmodel, "tflite": _write_tflite}
