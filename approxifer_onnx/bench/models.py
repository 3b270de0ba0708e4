"""Random-weight convolutional classifiers built with onnx.helper, for latency measurements.

Their outputs are meaningless as predictions, so the benchmark reports latency only for them.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["write_random_cnn"]

IR_VERSION = 10
OPSET = 17


def write_random_cnn(
    path: str | PathLike,
    *,
    widths: tuple[int, ...] = (32, 64, 128),
    query_shape: tuple[int, int, int] = (1, 28, 28),
    num_classes: int = 10,
    seed: int = 0,
) -> Path:
    """Write a CNN with random weights: one 3x3 convolution and ReLU per width, the first at
    stride 1 and the others at stride 2, then global average pooling and a linear layer.

    Parameters
    ----------
    path : str or PathLike
    widths : tuple of int
        Output channels of each convolution; wider and longer tuples make a slower model.
    query_shape : (channels, height, width)
    num_classes : int
    seed : int
        Seeds the He-initialised weights.

    Returns
    -------
    Path
        The written model: input "input" (batch, *query_shape) float32, output "logits"
        (batch, num_classes), IR version 10, opset 17.
    """
    rng = np.random.default_rng(seed)
    nodes, initializers = [], []
    previous, channels = "input", query_shape[0]
    for layer, width in enumerate(widths):
        weight = rng.normal(scale=np.sqrt(2.0 / (channels * 9)), size=(width, channels, 3, 3))
        initializers += [numpy_helper.from_array(weight.astype(np.float32), f"conv{layer}.weight"),
                         numpy_helper.from_array(np.zeros(width, np.float32), f"conv{layer}.bias")]
        stride = 1 if layer == 0 else 2
        nodes += [
            helper.make_node("Conv", [previous, f"conv{layer}.weight", f"conv{layer}.bias"], [f"conv{layer}"],
                             kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[stride, stride]),
            helper.make_node("Relu", [f"conv{layer}"], [f"relu{layer}"]),
        ]
        previous, channels = f"relu{layer}", width

    weight = rng.normal(scale=np.sqrt(1.0 / channels), size=(channels, num_classes)).astype(np.float32)
    initializers += [numpy_helper.from_array(weight, "fc.weight"),
                     numpy_helper.from_array(np.zeros(num_classes, np.float32), "fc.bias")]
    nodes += [
        helper.make_node("GlobalAveragePool", [previous], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["features"], axis=1),
        helper.make_node("Gemm", ["features", "fc.weight", "fc.bias"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "random_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *query_shape])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", num_classes])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path
