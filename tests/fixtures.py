"""Tiny ONNX models built with onnx.helper, for tests across the package.

Every builder writes one model to `path` and returns the path as a `pathlib.Path`. Models are
stamped with IR version `IR_VERSION` and opset `OPSET` of the default domain, which onnxruntime
1.17 and later load, unless the builder exists to break that rule. Weights come from
`numpy.random.default_rng(seed)`, and the matching ``*_weights`` function returns the same
values, so tests can compute expected outputs with NumPy.

The classifiers take images of shape (batch, 1, 4, 4) (`QUERY_SHAPE` per query), flatten them to
`NUM_FEATURES` = 16 features and return logits of shape (batch, num_classes).
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import numpy as np
import onnx
from numpy.typing import DTypeLike
from onnx import TensorProto, helper, numpy_helper

IR_VERSION = 10
OPSET = 17
QUERY_SHAPE = (1, 4, 4)
NUM_FEATURES = 16

# Far above any released IR version or opset, so every runtime rejects the models stamped with them.
FUTURE_IR_VERSION = 99
FUTURE_OPSET = 99


def linear_classifier_weights(
    num_classes: int = 10, seed: int = 0, dtype: DTypeLike = np.float32
) -> tuple[np.ndarray, np.ndarray]:
    """Return the weights of `write_linear_classifier` for the same arguments.

    Returns
    -------
    weight : ndarray, shape (NUM_FEATURES, num_classes)
    bias : ndarray, shape (num_classes,)
        Both in `dtype`; logits are ``x.reshape(len(x), -1) @ weight + bias``.
    """
    rng = np.random.default_rng(seed)
    weight = rng.normal(scale=0.5, size=(NUM_FEATURES, num_classes)).astype(dtype)
    bias = rng.normal(scale=0.1, size=num_classes).astype(dtype)
    return weight, bias


def mlp_classifier_weights(
    hidden: int = 8, num_classes: int = 10, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return the float32 weights of `write_mlp_classifier` for the same arguments.

    Returns
    -------
    weight1 : ndarray, shape (NUM_FEATURES, hidden)
    bias1 : ndarray, shape (hidden,)
    weight2 : ndarray, shape (hidden, num_classes)
    bias2 : ndarray, shape (num_classes,)
        Logits are ``relu(x.reshape(len(x), -1) @ weight1 + bias1) @ weight2 + bias2``.
    """
    rng = np.random.default_rng(seed)
    weight1 = rng.normal(scale=0.5, size=(NUM_FEATURES, hidden)).astype(np.float32)
    bias1 = rng.normal(scale=0.1, size=hidden).astype(np.float32)
    weight2 = rng.normal(scale=0.5, size=(hidden, num_classes)).astype(np.float32)
    bias2 = rng.normal(scale=0.1, size=num_classes).astype(np.float32)
    return weight1, bias1, weight2, bias2


def write_linear_classifier(
    path: str | PathLike,
    num_classes: int = 10,
    seed: int = 0,
    *,
    batch_size: int | str = "N",
    dtype: DTypeLike = np.float32,
    label_output: bool = False,
    initializers_as_inputs: bool = False,
    ir_version: int = IR_VERSION,
    opset: int = OPSET,
) -> Path:
    """Write a linear classifier: Flatten, then Gemm to `num_classes` logits.

    Parameters
    ----------
    path : str or PathLike
        File to write.
    num_classes : int
        Logits per query, output "logits" of shape (batch, num_classes).
    seed : int
        Seed of the weights, see `linear_classifier_weights`.
    batch_size : int or str
        The batch dimension of input "x" and of the outputs: a symbolic name such as "N" for a
        dynamic batch, or a fixed size such as 1.
    dtype : dtype-like
        float32, float64 or float16: the type of the input, the weights and the logits.
    label_output : bool
        Also return "label", the int64 ArgMax of the logits, of shape (batch,), as classifiers
        exported by sklearn-onnx do.
    initializers_as_inputs : bool
        Also list the weights as graph inputs, as exporters did before IR version 4.
    ir_version, opset : int
        The IR version and default-domain opset stamped on the model.
    """
    weight, bias = linear_classifier_weights(num_classes, seed, dtype)
    elem_type = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    initializers = [numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(bias, "bias")]

    nodes = [
        helper.make_node("Flatten", ["x"], ["features"], axis=1),
        helper.make_node("Gemm", ["features", "weight", "bias"], ["logits"]),
    ]
    inputs = [helper.make_tensor_value_info("x", elem_type, [batch_size, *QUERY_SHAPE])]
    outputs = [helper.make_tensor_value_info("logits", elem_type, [batch_size, num_classes])]
    if label_output:
        nodes.append(helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0))
        outputs.append(helper.make_tensor_value_info("label", TensorProto.INT64, [batch_size]))
    if initializers_as_inputs:
        inputs += [
            helper.make_tensor_value_info("weight", elem_type, list(weight.shape)),
            helper.make_tensor_value_info("bias", elem_type, list(bias.shape)),
        ]

    graph = helper.make_graph(nodes, "linear_classifier", inputs, outputs, initializers)
    return _save(graph, path, ir_version, opset)


def write_mlp_classifier(
    path: str | PathLike, hidden: int = 8, num_classes: int = 10, seed: int = 0
) -> Path:
    """Write a nonlinear float32 classifier: Flatten, MatMul, Add, Relu, MatMul, Add.

    Input "x" has shape (N, 1, 4, 4) and output "logits" (N, num_classes). The weights are those
    of `mlp_classifier_weights` for the same arguments.
    """
    weight1, bias1, weight2, bias2 = mlp_classifier_weights(hidden, num_classes, seed)
    initializers = [
        numpy_helper.from_array(weight1, "weight1"),
        numpy_helper.from_array(bias1, "bias1"),
        numpy_helper.from_array(weight2, "weight2"),
        numpy_helper.from_array(bias2, "bias2"),
    ]
    nodes = [
        helper.make_node("Flatten", ["x"], ["features"], axis=1),
        helper.make_node("MatMul", ["features", "weight1"], ["hidden_linear"]),
        helper.make_node("Add", ["hidden_linear", "bias1"], ["hidden_preactivation"]),
        helper.make_node("Relu", ["hidden_preactivation"], ["hidden"]),
        helper.make_node("MatMul", ["hidden", "weight2"], ["output_linear"]),
        helper.make_node("Add", ["output_linear", "bias2"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp_classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *QUERY_SHAPE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", num_classes])],
        initializers,
    )
    return _save(graph, path)


def write_future_ir_model(
    path: str | PathLike, seed: int = 0, ir_version: int = FUTURE_IR_VERSION
) -> Path:
    """Write `write_linear_classifier`'s model stamped with an IR version no runtime supports."""
    return write_linear_classifier(path, seed=seed, ir_version=ir_version)


def write_future_opset_model(path: str | PathLike, seed: int = 0, opset: int = FUTURE_OPSET) -> Path:
    """Write `write_linear_classifier`'s model importing a default-domain opset no runtime supports."""
    return write_linear_classifier(path, seed=seed, opset=opset)


def write_integer_input_model(
    path: str | PathLike, num_classes: int = 10, seed: int = 0, dtype: DTypeLike = np.int64
) -> Path:
    """Write a classifier whose input "x" of shape (N, 1, 4, 4) has an integer or bool `dtype`.

    The graph casts the input to float32 and then applies `linear_classifier_weights`.
    """
    weight, bias = linear_classifier_weights(num_classes, seed)
    input_type = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    nodes = [
        helper.make_node("Cast", ["x"], ["x_float"], to=TensorProto.FLOAT),
        helper.make_node("Flatten", ["x_float"], ["features"], axis=1),
        helper.make_node("Gemm", ["features", "weight", "bias"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "integer_input_classifier",
        [helper.make_tensor_value_info("x", input_type, ["N", *QUERY_SHAPE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", num_classes])],
        [numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(bias, "bias")],
    )
    return _save(graph, path)


def write_bfloat16_input_model(path: str | PathLike, num_classes: int = 10, seed: int = 0) -> Path:
    """Write a classifier whose input "x" of shape (N, 1, 4, 4) is bfloat16, cast to float32 inside."""
    weight, bias = linear_classifier_weights(num_classes, seed)
    nodes = [
        helper.make_node("Cast", ["x"], ["x_float"], to=TensorProto.FLOAT),
        helper.make_node("Flatten", ["x_float"], ["features"], axis=1),
        helper.make_node("Gemm", ["features", "weight", "bias"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "bfloat16_input_classifier",
        [helper.make_tensor_value_info("x", TensorProto.BFLOAT16, ["N", *QUERY_SHAPE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", num_classes])],
        [numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(bias, "bias")],
    )
    return _save(graph, path)


def write_two_input_model(path: str | PathLike, num_classes: int = 10, seed: int = 0) -> Path:
    """Write a classifier of the sum of two inputs "x" and "y", each of shape (N, 1, 4, 4)."""
    weight, bias = linear_classifier_weights(num_classes, seed)
    nodes = [
        helper.make_node("Add", ["x", "y"], ["total"]),
        helper.make_node("Flatten", ["total"], ["features"], axis=1),
        helper.make_node("Gemm", ["features", "weight", "bias"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "two_input_classifier",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *QUERY_SHAPE]),
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", *QUERY_SHAPE]),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", num_classes])],
        [numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(bias, "bias")],
    )
    return _save(graph, path)


def write_misdeclared_batch_model(path: str | PathLike, num_classes: int = 10, seed: int = 0) -> Path:
    """Write a classifier that declares a dynamic batch "N" but runs only at batch size 1.

    A Reshape to the fixed shape [1, -1] replaces Flatten, so a batch of 2 becomes one row
    of 32 features and the following MatMul with the (16, num_classes) weight fails. At batch 1
    the logits equal those of `write_linear_classifier` with the same seed.
    """
    weight, bias = linear_classifier_weights(num_classes, seed)
    initializers = [
        numpy_helper.from_array(weight, "weight"),
        numpy_helper.from_array(bias, "bias"),
        numpy_helper.from_array(np.array([1, -1], dtype=np.int64), "one_row"),
    ]
    nodes = [
        helper.make_node("Reshape", ["x", "one_row"], ["features"]),
        helper.make_node("MatMul", ["features", "weight"], ["linear"]),
        helper.make_node("Add", ["linear", "bias"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "misdeclared_batch_classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *QUERY_SHAPE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", num_classes])],
        initializers,
    )
    return _save(graph, path)


def write_batch_summing_model(path: str | PathLike, num_classes: int = 10, seed: int = 0) -> Path:
    """Write a model that declares a dynamic batch "N" but sums the batch into one row.

    It runs at any batch size, yet its logits always have shape (1, num_classes): they are the
    linear classifier's logits of the sum of all queries in the batch.
    """
    weight, bias = linear_classifier_weights(num_classes, seed)
    initializers = [
        numpy_helper.from_array(weight, "weight"),
        numpy_helper.from_array(bias, "bias"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "batch_axis"),
    ]
    nodes = [
        helper.make_node("Flatten", ["x"], ["features"], axis=1),
        helper.make_node("ReduceSum", ["features", "batch_axis"], ["summed"], keepdims=1),
        helper.make_node("Gemm", ["summed", "weight", "bias"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "batch_summing_classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *QUERY_SHAPE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", num_classes])],
        initializers,
    )
    return _save(graph, path)


def write_global_pool_classifier(path: str | PathLike, num_classes: int = 10, seed: int = 0) -> Path:
    """Write a classifier of images of any size: input "x" of shape (N, 1, "H", "W").

    GlobalAveragePool reduces each image to its mean m, and the logits are
    ``m * weight[0] + bias`` with `linear_classifier_weights` for the same seed.
    """
    weight, bias = linear_classifier_weights(num_classes, seed)
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["features"], axis=1),
        helper.make_node("Gemm", ["features", "weight", "bias"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "global_pool_classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, "H", "W"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", num_classes])],
        [numpy_helper.from_array(weight[:1], "weight"), numpy_helper.from_array(bias, "bias")],
    )
    return _save(graph, path)


def _save(graph: onnx.GraphProto, path: str | PathLike, ir_version: int = IR_VERSION, opset: int = OPSET) -> Path:
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset)],
        ir_version=ir_version,
        producer_name="approxifer-onnx tests",
    )
    path = Path(path)
    onnx.save(model, path)
    return path
