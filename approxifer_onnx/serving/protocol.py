"""The Open Inference Protocol v2 over HTTP: parse inference requests and encode responses.

This is the protocol of KServe and Triton (``/v2/models/{name}/infer``). A request body is a
JSON object, optionally followed by raw tensor bytes (the binary tensor data extension). With
raw bytes, the ``Inference-Header-Content-Length`` header gives the length of the JSON part,
and each input with a ``binary_data_size`` parameter takes that many bytes, in input order, in
little-endian row-major layout. Responses use the same layout for outputs requested with
``binary_data: true`` or the request parameter ``binary_data_output: true``.

Parameter values of the protocol are scalars (bool, number or string), so lists of worker
indices are sent as comma-separated strings.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "DATATYPES",
    "HEADER_LENGTH",
    "InferenceRequest",
    "ProtocolError",
    "datatype_of",
    "encode_infer_response",
    "parse_infer_request",
]

#: The HTTP header that gives the length of the JSON part of a body with binary tensors.
HEADER_LENGTH = "Inference-Header-Content-Length"

#: Protocol datatypes of real-valued tensors, with their little-endian NumPy dtype.
DATATYPES = {
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "INT8": np.dtype("i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "UINT8": np.dtype("u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
}


class ProtocolError(ValueError):
    """A request that breaks the protocol or does not fit the model; `status` is the HTTP code."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class InferenceRequest:
    """One parsed inference request.

    Attributes
    ----------
    inputs : numpy.ndarray of float64, shape (B, *query_shape)
        The queries, B >= 1.
    output_names : list of str
        Outputs to return, in response order.
    binary_outputs : dict of str to bool
        Whether each output is sent as binary tensor data.
    request_id : str or None
        The request's ``id``, echoed in the response.
    """

    inputs: np.ndarray
    output_names: list[str]
    binary_outputs: dict[str, bool] = field(default_factory=dict)
    request_id: str | None = None


def datatype_of(dtype: np.dtype) -> str:
    """Return the protocol datatype of a NumPy dtype, such as "FP32" for float32."""
    dtype = np.dtype(dtype)
    for name, candidate in DATATYPES.items():
        if candidate.kind == dtype.kind and candidate.itemsize == dtype.itemsize:
            return name
    raise ValueError(f"dtype {dtype} has no Open Inference Protocol datatype among {', '.join(DATATYPES)}")


def parse_infer_request(
    body: bytes,
    header_length: str | None,
    *,
    input_name: str,
    query_shape: Sequence[int],
    output_names: Sequence[str],
    max_inputs: int,
) -> InferenceRequest:
    """Parse and check the body of ``POST /v2/models/{name}/infer``.

    Parameters
    ----------
    body : bytes
        The whole (decompressed) request body.
    header_length : str or None
        The ``Inference-Header-Content-Length`` header, when binary tensor data follows the JSON.
    input_name : str
        The model's single input.
    query_shape : sequence of int
        Shape of one query; the input tensor must have shape (B, *query_shape).
    output_names : sequence of str
        Outputs that the server can return.
    max_inputs : int
        Maximum B in one request.

    Raises
    ------
    ProtocolError
        With status 400 and a message naming the problem, or 413 when B exceeds `max_inputs`.
    """
    json_part, binary_part = _split_body(body, header_length)
    try:
        document = json.loads(json_part)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ProtocolError(f"request body is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise ProtocolError(f"request body must be a JSON object, got {type(document).__name__}")

    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError(f"request 'id' must be a string, got {request_id!r}")
    parameters = _parameters(document, "request")

    inputs = document.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1:
        count = len(inputs) if isinstance(inputs, list) else "no list of"
        raise ProtocolError(f"request must have 'inputs', a list of exactly one tensor named {input_name!r}, got {count} inputs")
    tensor = _decode_input(inputs[0], binary_part, input_name, tuple(query_shape))
    if len(tensor) > max_inputs:
        raise ProtocolError(
            f"request carries {len(tensor)} inputs, more than the limit of {max_inputs}; split it into "
            f"smaller requests",
            status=413,
        )

    names, binary = _requested_outputs(document, parameters, output_names)
    return InferenceRequest(inputs=tensor, output_names=names, binary_outputs=binary, request_id=request_id)


def encode_infer_response(
    model_name: str,
    request: InferenceRequest,
    outputs: Mapping[str, np.ndarray],
    parameters: Mapping[str, Any],
) -> tuple[bytes, dict[str, str]]:
    """Encode the response of one inference request.

    Parameters
    ----------
    model_name : str
    request : InferenceRequest
    outputs : mapping of str to numpy.ndarray
        Each requested output, of shape (B, *output_shape), in the dtype to send.
    parameters : mapping of str to bool, int, float or str
        Response parameters (the coding metadata).

    Returns
    -------
    body : bytes
    headers : dict of str to str
        Content-Type, and ``Inference-Header-Content-Length`` when binary tensors follow.
    """
    described = []
    binary_chunks = []
    for name in request.output_names:
        array = np.asarray(outputs[name])
        datatype = datatype_of(array.dtype)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if request.binary_outputs.get(name, False):
            raw = np.ascontiguousarray(array, dtype=DATATYPES[datatype]).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            binary_chunks.append(raw)
        else:
            entry["data"] = array.reshape(-1).tolist()
        described.append(entry)

    document: dict[str, Any] = {"model_name": model_name, "outputs": described, "parameters": dict(parameters)}
    if request.request_id is not None:
        document["id"] = request.request_id
    header = json.dumps(document, allow_nan=False, separators=(",", ":")).encode()
    if not binary_chunks:
        return header, {"Content-Type": "application/json"}
    headers = {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(header))}
    return header + b"".join(binary_chunks), headers


def _split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    try:
        length = int(header_length)
    except ValueError:
        raise ProtocolError(f"header {HEADER_LENGTH} must be an integer, got {header_length!r}") from None
    if not 0 < length <= len(body):
        raise ProtocolError(
            f"header {HEADER_LENGTH}={length} must be between 1 and the body length {len(body)}"
        )
    return body[:length], body[length:]


def _parameters(entry: Mapping[str, Any], where: str) -> dict[str, Any]:
    parameters = entry.get("parameters", {})
    if not isinstance(parameters, dict):
        raise ProtocolError(f"{where} 'parameters' must be a JSON object, got {parameters!r}")
    return parameters


def _decode_input(entry: Any, binary_part: bytes, input_name: str, query_shape: tuple[int, ...]) -> np.ndarray:
    if not isinstance(entry, dict):
        raise ProtocolError(f"each input must be a JSON object, got {entry!r}")
    name = entry.get("name")
    if name != input_name:
        raise ProtocolError(f"input name {name!r} is unknown; the model's input is {input_name!r}")

    datatype = entry.get("datatype")
    if datatype not in DATATYPES:
        raise ProtocolError(
            f"input {name!r} has datatype {datatype!r}; use one of {', '.join(DATATYPES)} (the model "
            f"takes real-valued tensors)"
        )
    shape = entry.get("shape")
    expected = f"[batch, {', '.join(map(str, query_shape))}]"
    if (
        not isinstance(shape, list)
        or not all(isinstance(size, int) and not isinstance(size, bool) and size >= 0 for size in shape)
    ):
        raise ProtocolError(f"input {name!r} has shape {shape!r}; expected a list of sizes {expected}")
    if len(shape) != len(query_shape) + 1 or tuple(shape[1:]) != query_shape or shape[0] < 1:
        raise ProtocolError(f"input {name!r} has shape {shape}; expected {expected} with batch >= 1")

    dtype = DATATYPES[datatype]
    count = math.prod(shape)
    parameters = _parameters(entry, f"input {name!r}")
    if "binary_data_size" in parameters:
        size = parameters["binary_data_size"]
        if size != count * dtype.itemsize or len(binary_part) != size:
            raise ProtocolError(
                f"input {name!r} has binary_data_size {size!r} and {len(binary_part)} binary bytes, but "
                f"shape {shape} of {datatype} needs {count * dtype.itemsize} bytes"
            )
        values = np.frombuffer(binary_part, dtype=dtype)
    else:
        if binary_part:
            raise ProtocolError(f"the body has {len(binary_part)} binary bytes but no input declares binary_data_size")
        values = _json_values(entry.get("data"), name, dtype, count)

    tensor = values.reshape(shape).astype(np.float64)
    if not np.isfinite(tensor).all():
        raise ProtocolError(f"input {name!r} contains NaN or infinite values")
    return tensor


def _json_values(data: Any, name: str, dtype: np.dtype, count: int) -> np.ndarray:
    if data is None:
        raise ProtocolError(f"input {name!r} has no 'data' and no binary_data_size parameter")
    try:
        values = np.asarray(data, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as error:
        raise ProtocolError(f"input {name!r} 'data' must be a flat or nested list of numbers: {error}") from None
    if values.size != count:
        raise ProtocolError(f"input {name!r} 'data' has {values.size} values, but its shape needs {count}")
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if not np.array_equal(values, np.round(values)) or values.min() < info.min or values.max() > info.max:
            raise ProtocolError(f"input {name!r} 'data' contains values that are not {dtype.name} integers")
    return values


def _requested_outputs(
    document: Mapping[str, Any], parameters: Mapping[str, Any], available: Sequence[str]
) -> tuple[list[str], dict[str, bool]]:
    default_binary = parameters.get("binary_data_output", False)
    if not isinstance(default_binary, bool):
        raise ProtocolError(f"request parameter binary_data_output must be true or false, got {default_binary!r}")

    requested = document.get("outputs")
    if requested is None:
        return list(available), {name: default_binary for name in available}
    if not isinstance(requested, list) or not requested:
        raise ProtocolError(f"request 'outputs' must be a non-empty list of {{'name': ...}} objects, got {requested!r}")

    names: list[str] = []
    binary: dict[str, bool] = {}
    for entry in requested:
        name = entry.get("name") if isinstance(entry, dict) else None
        if name not in available:
            raise ProtocolError(
                f"output {name!r} is unknown or cannot be decoded; choose from {', '.join(map(repr, available))}"
            )
        flag = _parameters(entry, f"output {name!r}").get("binary_data", default_binary)
        if not isinstance(flag, bool):
            raise ProtocolError(f"output {name!r} parameter binary_data must be true or false, got {flag!r}")
        names.append(name)
        binary[name] = flag
    return names, binary
