"""OnnxModel: loading and checks, batch probing, providers and running on real onnxruntime sessions."""

import logging
import re
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from approxifer_onnx import model as model_module
from approxifer_onnx.exceptions import ModelCompatibilityError, ProviderError, ProviderFallbackWarning
from approxifer_onnx.model import OnnxModel, TensorInfo, runtime_limits

from . import fixtures

RUNTIME_ERROR = ort.capi.onnxruntime_pybind11_state.Fail


def linear_logits(x, num_classes=10, seed=0, dtype=np.float32):
    """Logits of `fixtures.write_linear_classifier`, computed in float64 with NumPy."""
    weight, bias = fixtures.linear_classifier_weights(num_classes, seed, dtype)
    return x.reshape(len(x), -1).astype(np.float64) @ weight.astype(np.float64) + bias.astype(np.float64)


def random_queries(count, seed=0):
    return np.random.default_rng(seed).normal(size=(count, *fixtures.QUERY_SHAPE))


def save_graph(path, graph, opset_imports=None):
    """Save `graph` with the fixtures' pinned IR version and opset."""
    if opset_imports is None:
        opset_imports = [helper.make_opsetid("", fixtures.OPSET)]
    model = helper.make_model(graph, opset_imports=opset_imports, ir_version=fixtures.IR_VERSION)
    onnx.save(model, path)
    return path


# --- Loading and checks ------------------------------------------------------------------------


# (dtype, absolute tolerance of the logits): float16 rounds the queries, weights and sums.
DTYPES = [(np.float32, 1e-5), (np.float64, 1e-12), (np.float16, 2e-2)]


@pytest.mark.parametrize(("dtype", "tolerance"), DTYPES)
def test_linear_classifier_matches_numpy(tmp_path, dtype, tolerance):
    model = OnnxModel(fixtures.write_linear_classifier(tmp_path / "linear.onnx", dtype=dtype))
    x = random_queries(5)

    (logits,) = model.predict(x)

    assert model.input_dtype == np.dtype(dtype)
    assert logits.dtype == np.float64
    assert logits.shape == (5, 10)
    expected = linear_logits(x.astype(dtype), dtype=dtype)
    np.testing.assert_allclose(logits, expected, atol=tolerance, rtol=tolerance)


def test_mlp_classifier_matches_numpy(tmp_path):
    model = OnnxModel(fixtures.write_mlp_classifier(tmp_path / "mlp.onnx", hidden=8, num_classes=3, seed=4))
    x = random_queries(6, seed=1)
    weight1, bias1, weight2, bias2 = fixtures.mlp_classifier_weights(8, 3, seed=4)

    (logits,) = model.predict(x)

    hidden = np.maximum(x.reshape(6, -1) @ weight1.astype(np.float64) + bias1, 0.0)
    expected = hidden @ weight2.astype(np.float64) + bias2
    np.testing.assert_allclose(logits, expected, atol=1e-5, rtol=1e-5)


def test_model_proto_accepted(tmp_path):
    proto = onnx.load(fixtures.write_linear_classifier(tmp_path / "linear.onnx", num_classes=3))

    model = OnnxModel(proto)

    assert model.path is None
    assert "linear_classifier" in model.source
    x = random_queries(2)
    np.testing.assert_allclose(model.predict(x)[0], linear_logits(x, 3), atol=1e-5)


def test_versions_recorded(tmp_path):
    model = OnnxModel(fixtures.write_linear_classifier(tmp_path / "linear.onnx"))

    assert model.ir_version == fixtures.IR_VERSION
    assert model.opset_imports == {"ai.onnx": fixtures.OPSET}


def test_missing_file_raises(tmp_path):
    path = tmp_path / "absent.onnx"
    with pytest.raises(FileNotFoundError, match=f"ONNX model file not found: {re.escape(str(path))}"):
        OnnxModel(path)


def test_folder_path_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="is a folder; give the .onnx file in it"):
        OnnxModel(tmp_path)


def test_text_file_raises(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("hello world, not a model\n")
    with pytest.raises(ModelCompatibilityError, match="notes.onnx is not an ONNX model: it does not parse"):
        OnnxModel(path)


def test_empty_file_raises(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(ModelCompatibilityError, match="empty.onnx is not an ONNX model: it has no IR version"):
        OnnxModel(path)


def test_path_of_wrong_type_raises():
    with pytest.raises(TypeError, match="path must be a str, os.PathLike or onnx.ModelProto, got int 3"):
        OnnxModel(3)


def test_checker_rejects_undefined_tensor(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["undefined"], ["y"])],
        "broken",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
    )
    path = save_graph(tmp_path / "broken.onnx", graph)
    with pytest.raises(ModelCompatibilityError, match="onnx.checker rejected .*broken.onnx: .*undefined"):
        OnnxModel(path)


def test_full_check_rejects_wrong_output_shape(tmp_path):
    # onnxruntime merges the declared (N, 3) with the real (N, 10) leniently and runs the model.
    model = onnx.load(fixtures.write_linear_classifier(tmp_path / "linear.onnx"))
    model.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 3
    path = tmp_path / "mislabelled.onnx"
    onnx.save(model, path)

    with pytest.raises(ModelCompatibilityError, match=r"differ in dimension 1: \(10\) vs \(3\).*full_check=False"):
        OnnxModel(path)
    lenient = OnnxModel(path, full_check=False)
    assert lenient.output_shapes == {"logits": (10,)}


def expected_limit(attribute):
    limits = runtime_limits()
    return str(getattr(limits, attribute)) if limits is not None else r"\d+"


def test_future_ir_version_raises(tmp_path):
    path = fixtures.write_future_ir_model(tmp_path / "future_ir.onnx")
    limit = expected_limit("max_ir_version")
    pattern = (
        f"future_ir.onnx has ONNX IR version {fixtures.FUTURE_IR_VERSION}, but onnxruntime "
        f"{re.escape(ort.__version__)} loads IR versions up to {limit}.*model.ir_version = {limit}"
    )
    with pytest.raises(ModelCompatibilityError, match=pattern):
        OnnxModel(path)


def test_future_opset_raises(tmp_path):
    path = fixtures.write_future_opset_model(tmp_path / "future_opset.onnx")
    limit = expected_limit("max_opset")
    pattern = (
        f"imports opset {fixtures.FUTURE_OPSET} of domain 'ai.onnx', but onnxruntime .* up to opset "
        f"{limit}; convert it with onnx.version_converter.convert_version\\(model, {limit}\\)"
    )
    with pytest.raises(ModelCompatibilityError, match=pattern):
        OnnxModel(path)


def test_future_ml_opset_raises(tmp_path):
    model = onnx.load(fixtures.write_linear_classifier(tmp_path / "linear.onnx"))
    model.opset_import.append(helper.make_opsetid("ai.onnx.ml", 99))
    limit = expected_limit("max_ml_opset")
    pattern = f"imports opset 99 of domain 'ai.onnx.ml', .* up to opset {limit}; re-export it with ai.onnx.ml opset {limit}"
    with pytest.raises(ModelCompatibilityError, match=pattern):
        OnnxModel(model)


@pytest.mark.parametrize(
    ("writer", "pattern"),
    [
        (fixtures.write_future_ir_model, r"has ONNX IR version 99, but onnxruntime .* loads IR versions up to \d+"),
        (fixtures.write_future_opset_model, r"imports opset 99 of domain 'ai.onnx', but .* up to opset \d+; convert"),
    ],
)
def test_runtime_load_error_translated(tmp_path, monkeypatch, writer, pattern):
    # With no table row, the version check is skipped and onnxruntime's own load error is translated.
    monkeypatch.setattr(model_module, "_RUNTIME_LIMITS", {})
    path = writer(tmp_path / "future.onnx")
    with pytest.raises(ModelCompatibilityError, match=pattern) as caught:
        OnnxModel(path)
    assert isinstance(caught.value.__cause__, RUNTIME_ERROR)


def test_unregistered_operator_raises(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Mystery", ["x"], ["y"], domain="com.example")],
        "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
    )
    opsets = [helper.make_opsetid("", fixtures.OPSET), helper.make_opsetid("com.example", 1)]
    path = save_graph(tmp_path / "custom.onnx", graph, opsets)
    pattern = f"onnxruntime {re.escape(ort.__version__)} failed to load .*custom.onnx: .*Mystery"
    with pytest.raises(ModelCompatibilityError, match=pattern):
        OnnxModel(path)


def test_runtime_limits_match_installed_runtime():
    limits = runtime_limits()
    if limits is None:
        pytest.skip(f"onnxruntime {ort.__version__} has no row in the limits table")

    def loads(ir_version, opset, ml_opset=None):
        graph = helper.make_graph(
            [helper.make_node("Relu", ["x"], ["y"])],
            "relu",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        )
        opsets = [helper.make_opsetid("", opset)]
        if ml_opset is not None:
            opsets.append(helper.make_opsetid("ai.onnx.ml", ml_opset))
        proto = helper.make_model(graph, opset_imports=opsets, ir_version=ir_version)
        try:
            ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        except RUNTIME_ERROR:
            return False
        return True

    assert loads(limits.max_ir_version, fixtures.OPSET)
    assert not loads(limits.max_ir_version + 1, fixtures.OPSET)
    assert loads(fixtures.IR_VERSION, limits.max_opset)
    assert not loads(fixtures.IR_VERSION, limits.max_opset + 1)
    assert loads(fixtures.IR_VERSION, fixtures.OPSET, limits.max_ml_opset)
    assert not loads(fixtures.IR_VERSION, fixtures.OPSET, limits.max_ml_opset + 1)


def test_runtime_limits_lookup():
    measured = runtime_limits("1.32.0")
    assert (measured.max_ir_version, measured.max_opset, measured.max_ml_opset) == (14, 28, 5)
    assert measured.max_opset_for("") == measured.max_opset_for("ai.onnx") == 28
    assert measured.max_opset_for("ai.onnx.ml") == 5
    assert measured.max_opset_for("com.microsoft") is None
    assert runtime_limits("1.18.1").max_ir_version == 10
    assert runtime_limits("1.26.0") is None
    assert runtime_limits("nightly") is None


# --- Inputs and outputs ------------------------------------------------------------------------


def test_two_inputs_raise(tmp_path):
    path = fixtures.write_two_input_model(tmp_path / "two.onnx")
    with pytest.raises(ModelCompatibilityError, match=r"has 2 inputs \['x', 'y'\], but coded inference needs exactly one input tensor"):
        OnnxModel(path)


def test_initializers_listed_as_inputs_do_not_count(tmp_path):
    path = fixtures.write_linear_classifier(tmp_path / "old_style.onnx", num_classes=3, initializers_as_inputs=True)

    model = OnnxModel(path)

    assert [info.name for info in model.inputs] == ["x"]
    x = random_queries(3)
    np.testing.assert_allclose(model.predict(x)[0], linear_logits(x, 3), atol=1e-5)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_])
def test_integer_input_raises(tmp_path, dtype):
    path = fixtures.write_integer_input_model(tmp_path / "integer.onnx", dtype=dtype)
    type_name = {np.int64: "int64", np.int32: "int32", np.uint8: "uint8", np.bool_: "bool"}[dtype]
    pattern = f"input 'x' of .* has integer or boolean type tensor\\({type_name}\\); coded queries are real-valued"
    with pytest.raises(ModelCompatibilityError, match=pattern):
        OnnxModel(path)


def test_bfloat16_input_raises(tmp_path):
    path = fixtures.write_bfloat16_input_model(tmp_path / "bfloat16.onnx")
    with pytest.raises(ModelCompatibilityError, match=r"type tensor\(bfloat16\), which this package cannot feed because NumPy"):
        OnnxModel(path)


def test_sequence_input_raises(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("SequenceAt", ["x", "first"], ["y"])],
        "sequence_input",
        [helper.make_tensor_sequence_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(np.array(0, dtype=np.int64), "first")],
    )
    path = save_graph(tmp_path / "sequence.onnx", graph)
    with pytest.raises(ModelCompatibilityError, match=r"has type seq\(tensor\(float\)\), but coded inference needs a floating-point tensor"):
        OnnxModel(path)


def test_scalar_input_raises(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "scalar",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
    )
    path = save_graph(tmp_path / "scalar.onnx", graph)
    with pytest.raises(ModelCompatibilityError, match="input 'x' of .* is a scalar, but coded inference needs a batch dimension"):
        OnnxModel(path)


def test_integer_outputs_only_raise(tmp_path):
    weight, bias = fixtures.linear_classifier_weights(3)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["x"], ["features"], axis=1),
            helper.make_node("Gemm", ["features", "weight", "bias"], ["logits"]),
            helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
        ],
        "labels_only",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *fixtures.QUERY_SHAPE])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["N"])],
        [numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(bias, "bias")],
    )
    path = save_graph(tmp_path / "labels.onnx", graph)
    with pytest.raises(ModelCompatibilityError, match=r"has no floating-point output to decode, only \['label tensor\(int64\)'\]"):
        OnnxModel(path)


def test_label_output_listed_but_not_decodable(tmp_path):
    model = OnnxModel(fixtures.write_linear_classifier(tmp_path / "labelled.onnx", num_classes=3, label_output=True))

    assert model.outputs == (
        TensorInfo("logits", ("N", 3), "tensor(float)", np.dtype(np.float32), True),
        TensorInfo("label", ("N",), "tensor(int64)", np.dtype(np.int64), False),
    )
    assert model.decodable_output_names == ("logits",)
    outputs = model.predict(random_queries(2))
    assert len(outputs) == 1
    assert outputs[0].shape == (2, 3)
    with pytest.raises(ValueError, match=r"output 'label' of .* is not a floating-point tensor and cannot be decoded; request one of \['logits'\]"):
        model.predict(random_queries(2), output_names=["label"])


def test_input_described(tmp_path):
    model = OnnxModel(fixtures.write_linear_classifier(tmp_path / "linear.onnx", dtype=np.float16))

    assert model.input == TensorInfo("x", ("N", 1, 4, 4), "tensor(float16)", np.dtype(np.float16), True)
    assert model.inputs == (model.input,)


# --- Batch probing -----------------------------------------------------------------------------


def test_dynamic_batch_is_batched(tmp_path):
    model = OnnxModel(fixtures.write_linear_classifier(tmp_path / "linear.onnx"))

    assert model.batch_mode == "batched"
    assert model.batch_size is None
    assert model.query_shape == (1, 4, 4)
    assert model.output_shapes == {"logits": (10,)}


@pytest.mark.parametrize("count", [1, 4, 5, 9])
def test_fixed_batch_pads_and_slices(tmp_path, count):
    model = OnnxModel(fixtures.write_linear_classifier(tmp_path / "batch4.onnx", batch_size=4))
    x = random_queries(count, seed=count)

    (logits,) = model.predict(x)

    assert model.batch_mode == "single"
    assert model.batch_size == 4
    assert logits.shape == (count, 10)
    np.testing.assert_allclose(logits, linear_logits(x), atol=1e-5)


def test_fixed_batch_one_runs_query_by_query(tmp_path):
    model = OnnxModel(fixtures.write_linear_classifier(tmp_path / "batch1.onnx", batch_size=1))
    x = random_queries(3)

    (logits,) = model.predict(x)

    assert model.batch_mode == "single"
    assert model.batch_size == 1
    np.testing.assert_allclose(logits, linear_logits(x), atol=1e-5)


@pytest.mark.parametrize("writer", [fixtures.write_misdeclared_batch_model, fixtures.write_batch_summing_model])
def test_declared_dynamic_batch_falls_back_to_single(tmp_path, caplog, writer):
    path = writer(tmp_path / "misdeclared.onnx")
    with caplog.at_level(logging.WARNING, logger="approxifer_onnx.model"):
        model = OnnxModel(path)

    assert model.batch_mode == "single"
    assert model.batch_size == 1
    assert "declares a dynamic batch dimension 'N' but fails at batch size 2" in caplog.text
    x = random_queries(3)
    np.testing.assert_allclose(model.predict(x)[0], linear_logits(x), atol=1e-5)


def test_symbolic_query_dimensions_need_input_shape(tmp_path):
    path = fixtures.write_global_pool_classifier(tmp_path / "pool.onnx")
    pattern = r"has shape \('N', 1, 'H', 'W'\) with symbolic dimensions \['H', 'W'\] besides the batch dimension; pass input_shape"
    with pytest.raises(ModelCompatibilityError, match=pattern):
        OnnxModel(path)


def test_input_shape_fills_symbolic_dimensions(tmp_path):
    model = OnnxModel(fixtures.write_global_pool_classifier(tmp_path / "pool.onnx", num_classes=3), input_shape=(1, 5, 6))
    x = np.random.default_rng(2).normal(size=(4, 1, 5, 6))

    (logits,) = model.predict(x)

    assert model.query_shape == (1, 5, 6)
    assert model.batch_mode == "batched"
    weight, bias = fixtures.linear_classifier_weights(3)
    expected = x.mean(axis=(1, 2, 3))[:, None] * weight[0].astype(np.float64) + bias
    np.testing.assert_allclose(logits, expected, atol=1e-5)


@pytest.mark.parametrize(
    ("input_shape", "error", "pattern"),
    [
        ((5, 6), ValueError, r"input_shape=\(5, 6\) has 2 dimensions, but input 'x' of shape .* has 3"),
        ((3, 5, 6), ValueError, r"sets dimension 1 of input 'x' to 3, but the model fixes it to 1"),
        ((1, 0, 6), ValueError, r"input_shape must contain positive ints, got input_shape=\(1, 0, 6\)"),
        ("1x5x6", TypeError, "input_shape must be a sequence of ints, got str"),
    ],
)
def test_invalid_input_shape_raises(tmp_path, input_shape, error, pattern):
    path = fixtures.write_global_pool_classifier(tmp_path / "pool.onnx")
    with pytest.raises(error, match=pattern):
        OnnxModel(path, input_shape=input_shape)


# --- Running -----------------------------------------------------------------------------------


def test_run_on_new_session_matches_predict(tmp_path):
    model = OnnxModel(fixtures.write_linear_classifier(tmp_path / "linear.onnx"))
    session = model.new_session()
    x = random_queries(7)

    (logits,) = model.run(session, x)

    np.testing.assert_allclose(logits, model.predict(x)[0], rtol=0, atol=0)
    np.testing.assert_allclose(logits, linear_logits(x), atol=1e-5)


def test_run_casts_float64_queries_to_float16(tmp_path):
    model = OnnxModel(fixtures.write_linear_classifier(tmp_path / "half.onnx", dtype=np.float16))
    x = random_queries(4)

    (logits,) = model.run(model.new_session(), x)

    assert logits.dtype == np.float64
    np.testing.assert_allclose(logits, linear_logits(x.astype(np.float16), dtype=np.float16), atol=2e-2)


def test_float16_overflow_logged(tmp_path, caplog):
    model = OnnxModel(fixtures.write_linear_classifier(tmp_path / "half.onnx", dtype=np.float16))
    x = random_queries(2)
    x[0, 0, 0, :2] = 1e5

    with caplog.at_level(logging.WARNING, logger="approxifer_onnx.model"):
        model.predict(x)

    assert "2 finite query values of" in caplog.text
    assert "overflowed to inf when cast to float16" in caplog.text


def test_run_empty_batch(tmp_path):
    model = OnnxModel(fixtures.write_linear_classifier(tmp_path / "linear.onnx", num_classes=3))

    (logits,) = model.predict(np.empty((0, 1, 4, 4)))

    assert logits.shape == (0, 3)
    assert logits.dtype == np.float64


def test_run_accepts_integer_queries(tmp_path):
    model = OnnxModel(fixtures.write_linear_classifier(tmp_path / "linear.onnx"))
    x = np.arange(32, dtype=np.uint8).reshape(2, 1, 4, 4)

    np.testing.assert_allclose(model.predict(x)[0], linear_logits(x), atol=1e-4)


@pytest.mark.parametrize(
    ("x", "output_names", "error", "pattern"),
    [
        (np.zeros((2, 16)), None, ValueError, r"x must have shape \(batch, \*\(1, 4, 4\)\) for input 'x', got \(2, 16\)"),
        (np.zeros((1, 4, 4)), None, ValueError, r"got \(1, 4, 4\); reshape the queries to query_shape=\(1, 4, 4\)"),
        (np.zeros((2, 1, 4, 4), dtype=complex), None, TypeError, "x must hold real numbers .*, got dtype complex128"),
        (np.zeros((2, 1, 4, 4), dtype=bool), None, TypeError, "x must hold real numbers .*, got dtype bool"),
        (np.zeros((2, 1, 4, 4)), ["probabilities"], ValueError, r"output 'probabilities' not found; the outputs of .* are \['logits'\]"),
        (np.zeros((2, 1, 4, 4)), "logits", TypeError, "output_names must be a list of names, got the str 'logits'"),
    ],
)
def test_run_rejects_invalid_arguments(tmp_path, x, output_names, error, pattern):
    model = OnnxModel(fixtures.write_linear_classifier(tmp_path / "linear.onnx"))
    with pytest.raises(error, match=pattern):
        model.predict(x, output_names)


def test_run_stops_on_terminate(tmp_path):
    model = OnnxModel(fixtures.write_linear_classifier(tmp_path / "batch1.onnx", batch_size=1))
    run_options = ort.RunOptions()
    run_options.terminate = True

    with pytest.raises(RUNTIME_ERROR, match="terminate flag"):
        model.run(model.new_session(), random_queries(3), run_options=run_options)


def test_new_session_sets_threads(tmp_path):
    model = OnnxModel(fixtures.write_linear_classifier(tmp_path / "linear.onnx"))

    session = model.new_session(intra_op_threads=2, inter_op_threads=1)

    options = session.get_session_options()
    assert options.intra_op_num_threads == 2
    assert options.inter_op_num_threads == 1
    assert session.get_providers() == ["CPUExecutionProvider"]


def test_new_session_restores_caller_options(tmp_path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    model = OnnxModel(fixtures.write_linear_classifier(tmp_path / "linear.onnx"), session_options=options)

    session = model.new_session(intra_op_threads=1)

    used = session.get_session_options()
    assert used.intra_op_num_threads == 1
    assert used.graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    assert options.intra_op_num_threads == 3


@pytest.mark.parametrize(
    ("arguments", "error", "pattern"),
    [
        ({"intra_op_threads": -1}, ValueError, r"intra_op_threads must be at least 0 \(0: onnxruntime chooses\), got intra_op_threads=-1"),
        ({"inter_op_threads": 1.5}, TypeError, "inter_op_threads must be an int, got float 1.5"),
    ],
)
def test_new_session_rejects_invalid_threads(tmp_path, arguments, error, pattern):
    model = OnnxModel(fixtures.write_linear_classifier(tmp_path / "linear.onnx"))
    with pytest.raises(error, match=pattern):
        model.new_session(**arguments)


# --- Providers ---------------------------------------------------------------------------------


def test_default_providers_are_cpu(tmp_path):
    model = OnnxModel(fixtures.write_linear_classifier(tmp_path / "linear.onnx"))

    assert model.requested_providers == ("CPUExecutionProvider",)
    assert model.active_providers == ("CPUExecutionProvider",)


def test_provider_with_options_accepted(tmp_path):
    providers = [("CPUExecutionProvider", {"arena_extend_strategy": "kSameAsRequested"})]

    model = OnnxModel(fixtures.write_linear_classifier(tmp_path / "linear.onnx"), providers=providers)

    assert model.requested_providers == ("CPUExecutionProvider",)
    assert model.active_providers == ("CPUExecutionProvider",)


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="this onnxruntime has CUDA")
def test_unavailable_provider_falls_back_with_warning(tmp_path, caplog):
    path = fixtures.write_linear_classifier(tmp_path / "linear.onnx")
    with caplog.at_level(logging.WARNING, logger="approxifer_onnx.model"):
        with pytest.warns(ProviderFallbackWarning, match=r"build lacks \['CUDAExecutionProvider'\]") as caught:
            model = OnnxModel(path, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])

    assert caught[0].filename == __file__
    assert "provider fallback" in caplog.text
    assert model.requested_providers == ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert model.active_providers == ("CPUExecutionProvider",)
    x = random_queries(2)
    np.testing.assert_allclose(model.predict(x)[0], linear_logits(x), atol=1e-5)


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="this onnxruntime has CUDA")
def test_unavailable_provider_strict_raises(tmp_path):
    path = fixtures.write_linear_classifier(tmp_path / "linear.onnx")
    pattern = r"requested execution providers \['CUDAExecutionProvider'\] .* but this onnxruntime .* build lacks .* onnxruntime-gpu"
    with pytest.raises(ProviderError, match=pattern):
        OnnxModel(path, providers=["CUDAExecutionProvider"], strict_providers=True)


def pretend_cuda_available(monkeypatch):
    """Make the pre-check believe CUDA is available, as on a CUDA build without a usable GPU.

    onnxruntime then really receives the CUDA request, cannot activate it and falls back to CPU.
    """
    available = ort.get_available_providers()
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", *available])


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="this onnxruntime has CUDA")
@pytest.mark.filterwarnings("ignore:Specified provider:UserWarning")
def test_inactive_provider_detected_after_session_creation(tmp_path, monkeypatch):
    pretend_cuda_available(monkeypatch)
    path = fixtures.write_linear_classifier(tmp_path / "linear.onnx")

    with pytest.warns(ProviderFallbackWarning, match=r"did not activate \['CUDAExecutionProvider'\] \(active: CPUExecutionProvider\)") as caught:
        model = OnnxModel(path, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    fallback_warnings = [item for item in caught if item.category is ProviderFallbackWarning]
    assert fallback_warnings[0].filename == __file__
    assert model.active_providers == ("CPUExecutionProvider",)

    # The worker sessions fall back the same way, which was reported once already.
    with warnings.catch_warnings(record=True) as repeated:
        warnings.simplefilter("always")
        session = model.new_session()
    assert not [item for item in repeated if item.category is ProviderFallbackWarning]
    assert session.get_providers() == ["CPUExecutionProvider"]


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="this onnxruntime has CUDA")
@pytest.mark.filterwarnings("ignore:Specified provider:UserWarning")
def test_inactive_provider_strict_raises(tmp_path, monkeypatch):
    pretend_cuda_available(monkeypatch)
    path = fixtures.write_linear_classifier(tmp_path / "linear.onnx")
    with pytest.raises(ProviderError, match=r"but onnxruntime .* did not activate \['CUDAExecutionProvider'\]"):
        OnnxModel(path, providers=["CUDAExecutionProvider"], strict_providers=True)


@pytest.mark.parametrize(
    ("providers", "error", "pattern"),
    [
        (["CUDAExecutionProvder"], ValueError, "invalid execution provider name 'CUDAExecutionProvder'; valid names are .*CUDAExecutionProvider"),
        ("CPUExecutionProvider", TypeError, r"providers must be a list .* got str 'CPUExecutionProvider'; for one provider write \['CPUExecutionProvider'\]"),
        ([("CPUExecutionProvider", "fast")], TypeError, r"each provider must be a name or a \(name, options dict\) tuple, got \('CPUExecutionProvider', 'fast'\)"),
        ([], ValueError, r"providers must name at least one execution provider, got providers=\[\]"),
    ],
)
def test_invalid_providers_raise(tmp_path, providers, error, pattern):
    path = fixtures.write_linear_classifier(tmp_path / "linear.onnx")
    with pytest.raises(error, match=pattern):
        OnnxModel(path, providers=providers)


def test_session_options_of_wrong_type_raise(tmp_path):
    path = fixtures.write_linear_classifier(tmp_path / "linear.onnx")
    with pytest.raises(TypeError, match="session_options must be an onnxruntime.SessionOptions, got dict"):
        OnnxModel(path, session_options={"intra_op_num_threads": 1})


# --- Fixtures ----------------------------------------------------------------------------------


def test_fixtures_pin_ir_version_and_opset(tmp_path):
    writers = [
        fixtures.write_linear_classifier,
        fixtures.write_mlp_classifier,
        fixtures.write_integer_input_model,
        fixtures.write_bfloat16_input_model,
        fixtures.write_two_input_model,
        fixtures.write_misdeclared_batch_model,
        fixtures.write_batch_summing_model,
        fixtures.write_global_pool_classifier,
    ]
    for writer in writers:
        path = writer(tmp_path / f"{writer.__name__}.onnx")
        proto = onnx.load(path)
        onnx.checker.check_model(proto, full_check=True)
        assert proto.ir_version == fixtures.IR_VERSION, writer.__name__
        assert [(entry.domain, entry.version) for entry in proto.opset_import] == [("", fixtures.OPSET)], writer.__name__
