"""EDSR/MDSR as an ONNX graph written with ``onnx.helper`` (tf2onnx cannot read jax2tf's StableHLO).

``DepthToSpace`` in ``CRD`` mode is PyTorch's pixel-shuffle order: no channel permutation needed.
"""

from __future__ import annotations

import numpy as np

from edsr_jax import models
from edsr_jax.models.edsr import PRE_PROCESS_BLOCKS

# DepthToSpace CRD needs 11; 17 is read by runtimes from 2022 on.
OPSET = 17


class _Graph:
    """Nodes and initialisers being collected, with fresh names."""

    def __init__(self, params: dict):
        self.params = params
        self.nodes: list = []
        self.initializers: list = []
        self.count = 0

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}_{self.count}"

    def constant(self, prefix: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.name(prefix)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def op(self, kind: str, inputs: list[str], **attributes) -> str:
        from onnx import helper

        out = self.name(kind.lower())
        self.nodes.append(helper.make_node(kind, inputs, [out], **attributes))
        return out

    def conv(self, path: str, x: str) -> str:
        node = self.params
        for part in path.split("/"):
            node = node[part]
        kernel = np.asarray(node["kernel"], np.float32)  # HWIO -> OIHW
        k = kernel.shape[0]
        weight = self.constant(f"{path}/weight", kernel.transpose(3, 2, 0, 1))
        bias = self.constant(f"{path}/bias", np.asarray(node["bias"], np.float32))
        return self.op("Conv", [x, weight, bias], kernel_shape=[k, k], pads=[k // 2] * 4, strides=[1, 1])

    def resblock(self, path: str, x: str, res_scale: float) -> str:
        y = self.conv(f"{path}/conv2", self.op("Relu", [self.conv(f"{path}/conv1", x)]))
        if res_scale != 1.0:
            y = self.op("Mul", [y, self.constant(f"{path}/res_scale", np.float32(res_scale))])
        return self.op("Add", [x, y])

    def upsample(self, path: str, x: str, scale: int) -> str:
        for k, r in enumerate((2, 2) if scale == 4 else (scale,)):
            x = self.op("DepthToSpace", [self.conv(f"{path}/conv_{k}", x)], blocksize=r, mode="CRD")
        return x


def build(model: models.SRModel, variables: dict, scale: int, *, fp16: bool = False):
    """The ``onnx.ModelProto`` of ``model`` at ``scale``; ``fp16`` computes in float16, float32 in and out."""
    from onnx import TensorProto, checker, helper

    graph = _Graph(variables["params"])
    mean = (models.RGB_RANGE * np.asarray(models.DIV2K_RGB_MEAN, np.float32)).reshape(1, 3, 1, 1)
    mean_name = graph.constant("div2k_mean", mean)
    x = graph.conv("head", graph.op("Sub", ["lr", mean_name]))
    mdsr = isinstance(model, models.MDSR)
    if mdsr:
        for k in range(PRE_PROCESS_BLOCKS):
            x = graph.resblock(f"pre_process_x{scale}_{k}", x, 1.0)
    trunk = x
    for i in range(model.num_blocks):
        trunk = graph.resblock(f"block_{i}", trunk, float(model.res_scale))
    x = graph.op("Add", [graph.conv("body_end", trunk), x])
    x = graph.upsample(f"upsample_x{scale}" if mdsr else "upsample", x, scale)
    out = graph.op("Add", [graph.conv("tail", x), mean_name])
    graph.nodes.append(helper.make_node("Identity", [out], ["sr"]))
    image = lambda name, factor: helper.make_tensor_value_info(  # noqa: E731
        name, TensorProto.FLOAT, ["n", 3, f"height{factor}", f"width{factor}"]
    )
    onnx_graph = helper.make_graph(
        graph.nodes, f"edsr_jax_x{scale}", [image("lr", "")], [image("sr", f"_x{scale}")], graph.initializers
    )
    proto = helper.make_model(
        onnx_graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edsr-jax"
    )
    checker.check_model(proto)
    if fp16:
        import warnings

        from onnxconverter_common import float16

        with warnings.catch_warnings():  # (a warning per weight too small for float16)
            warnings.simplefilter("ignore", UserWarning)
            proto = float16.convert_float_to_float16(proto, keep_io_types=True)
    return proto
