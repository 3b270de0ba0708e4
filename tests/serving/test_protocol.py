"""Parsing and encoding of Open Inference Protocol v2 messages."""

import json

import numpy as np
import pytest

from approxifer_onnx.serving.protocol import (
    HEADER_LENGTH,
    InferenceRequest,
    ProtocolError,
    datatype_of,
    encode_infer_response,
    parse_infer_request,
)

QUERY_SHAPE = (1, 4, 4)
MODEL = {"input_name": "x", "query_shape": QUERY_SHAPE, "output_names": ["logits", "probs"], "max_inputs": 16}


def json_body(tensor, datatype="FP32", **extra):
    document = {
        "inputs": [{"name": "x", "shape": list(tensor.shape), "datatype": datatype, "data": tensor.ravel().tolist()}],
        **extra,
    }
    return json.dumps(document).encode()


def binary_body(tensor, datatype="FP32", **extra):
    raw = tensor.tobytes()
    document = {
        "inputs": [{"name": "x", "shape": list(tensor.shape), "datatype": datatype,
                    "parameters": {"binary_data_size": len(raw)}}],
        **extra,
    }
    header = json.dumps(document).encode()
    return header + raw, str(len(header))


def test_json_request_round_trip():
    tensor = np.arange(32, dtype=np.float32).reshape(2, *QUERY_SHAPE)
    request = parse_infer_request(json_body(tensor, id="r1"), None, **MODEL)
    assert request.inputs.dtype == np.float64
    np.testing.assert_array_equal(request.inputs, tensor)
    assert request.request_id == "r1"
    assert request.output_names == ["logits", "probs"]
    assert request.binary_outputs == {"logits": False, "probs": False}


@pytest.mark.parametrize("datatype, dtype", [("FP16", "<f2"), ("FP64", "<f8"), ("INT32", "<i4"), ("UINT8", "u1")])
def test_binary_request_each_datatype(datatype, dtype):
    tensor = np.arange(16, dtype=dtype).reshape(1, *QUERY_SHAPE)
    body, length = binary_body(tensor, datatype)
    request = parse_infer_request(body, length, **MODEL)
    np.testing.assert_array_equal(request.inputs, tensor.astype(np.float64))


def test_requested_outputs_and_binary_flags():
    tensor = np.zeros((1, *QUERY_SHAPE), dtype=np.float32)
    outputs = [{"name": "probs", "parameters": {"binary_data": True}}, {"name": "logits"}]
    request = parse_infer_request(json_body(tensor, outputs=outputs), None, **MODEL)
    assert request.output_names == ["probs", "logits"]
    assert request.binary_outputs == {"probs": True, "logits": False}


# (change to a valid one-input FP32 request, expected message)
INVALID_REQUESTS = [
    (lambda doc: doc["inputs"][0].update(name="image"), r"input name 'image' is unknown; the model's input is 'x'"),
    (lambda doc: doc["inputs"][0].update(shape=[2, 16]), r"has shape \[2, 16\]; expected \[batch, 1, 4, 4\]"),
    (lambda doc: doc["inputs"][0].update(shape=[0, 1, 4, 4], data=[]), r"expected \[batch, 1, 4, 4\] with batch >= 1"),
    (lambda doc: doc["inputs"][0].update(datatype="BYTES"), r"datatype 'BYTES'; use one of FP16"),
    (lambda doc: doc["inputs"][0].update(data=[1.0] * 5), r"'data' has 5 values, but its shape needs 16"),
    (lambda doc: doc["inputs"][0].update(data=["a"] * 16), r"'data' must be a flat or nested list of numbers"),
    (lambda doc: doc["inputs"][0].update(data=None), r"has no 'data' and no binary_data_size"),
    (lambda doc: doc["inputs"].append(dict(doc["inputs"][0])), r"exactly one tensor named 'x', got 2 inputs"),
    (lambda doc: doc.update(outputs=[{"name": "label"}]), r"output 'label' is unknown or cannot be decoded"),
    (lambda doc: doc.update(outputs=[]), r"'outputs' must be a non-empty list"),
    (lambda doc: doc.update(id=7), r"'id' must be a string, got 7"),
    (lambda doc: doc.update(parameters={"binary_data_output": "yes"}), r"binary_data_output must be true or false"),
]


@pytest.mark.parametrize("change, message", INVALID_REQUESTS)
def test_invalid_request_names_problem(change, message):
    document = json.loads(json_body(np.zeros((1, *QUERY_SHAPE), dtype=np.float32)))
    change(document)
    with pytest.raises(ProtocolError, match=message) as caught:
        parse_infer_request(json.dumps(document).encode(), None, **MODEL)
    assert caught.value.status == 400


def test_nan_input_rejected():
    body = b'{"inputs": [{"name": "x", "shape": [1, 1, 4, 4], "datatype": "FP64", "data": [' + b",".join(
        [b"NaN"] + [b"0"] * 15
    ) + b"]}]}"
    with pytest.raises(ProtocolError, match=r"input 'x' contains NaN or infinite values"):
        parse_infer_request(body, None, **MODEL)


def test_integer_data_out_of_range_rejected():
    document = json.loads(json_body(np.zeros((1, *QUERY_SHAPE)), "UINT8"))
    document["inputs"][0]["data"][0] = 300
    with pytest.raises(ProtocolError, match=r"values that are not uint8 integers"):
        parse_infer_request(json.dumps(document).encode(), None, **MODEL)


def test_not_json_rejected():
    with pytest.raises(ProtocolError, match=r"request body is not valid JSON"):
        parse_infer_request(b"{inputs", None, **MODEL)


def test_binary_size_mismatch_rejected():
    body, length = binary_body(np.zeros((1, *QUERY_SHAPE), dtype=np.float32))
    with pytest.raises(ProtocolError, match=r"binary_data_size 64 and 60 binary bytes"):
        parse_infer_request(body[:-4], length, **MODEL)


@pytest.mark.parametrize("length, message", [("abc", r"must be an integer, got 'abc'"), ("100000", r"between 1 and the body length")])
def test_bad_header_length_rejected(length, message):
    body, _ = binary_body(np.zeros((1, *QUERY_SHAPE), dtype=np.float32))
    with pytest.raises(ProtocolError, match=f"{HEADER_LENGTH}.*{message}"):
        parse_infer_request(body, length, **MODEL)


def test_too_many_inputs_is_413():
    tensor = np.zeros((17, *QUERY_SHAPE), dtype=np.float32)
    with pytest.raises(ProtocolError, match=r"carries 17 inputs, more than the limit of 16") as caught:
        parse_infer_request(json_body(tensor), None, **MODEL)
    assert caught.value.status == 413


def test_response_json_and_binary_outputs():
    logits = np.array([[1.5, -2.0], [0.25, 3.0]], dtype=np.float32)
    probs = np.array([[0.1, 0.9], [0.6, 0.4]])
    request = InferenceRequest(
        inputs=np.zeros((2, 1)), output_names=["logits", "probs"],
        binary_outputs={"logits": True, "probs": False}, request_id="abc",
    )
    body, headers = encode_infer_response("mlp", request, {"logits": logits, "probs": probs}, {"coding": "exact"})

    length = int(headers[HEADER_LENGTH])
    document = json.loads(body[:length])
    assert document["id"] == "abc"
    assert document["model_name"] == "mlp"
    assert document["parameters"] == {"coding": "exact"}
    first, second = document["outputs"]
    assert first == {"name": "logits", "datatype": "FP32", "shape": [2, 2], "parameters": {"binary_data_size": 16}}
    np.testing.assert_array_equal(np.frombuffer(body[length:], dtype="<f4").reshape(2, 2), logits)
    assert second["datatype"] == "FP64"
    assert second["data"] == probs.ravel().tolist()


def test_datatype_of_rejects_bool():
    assert datatype_of(np.float16) == "FP16"
    with pytest.raises(ValueError, match=r"dtype bool has no Open Inference Protocol datatype"):
        datatype_of(np.bool_)
