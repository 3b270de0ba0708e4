"""The ONNX model adapter: load and check a classifier, probe its batch dimension, run queries.

`OnnxModel` is the only place where the package opens ONNX files and creates onnxruntime
sessions. Before any query is sent, it rejects the models that coded inference cannot use. These
are files that are not valid ONNX, IR versions and opsets newer than the installed onnxruntime
supports, models with more than one input, and inputs that are not floating point. Coded queries
are affine combinations of real queries with weights that can be negative, so an integer or
boolean input has no coded counterpart.

Everything upstream works in float64. `OnnxModel.run` casts the queries to the model's input
dtype at this boundary and returns float64 outputs, so float16 models need nothing special.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import onnx
import onnxruntime as ort
from google.protobuf.message import DecodeError
from onnxruntime.capi import onnxruntime_pybind11_state as _ort_state

from .exceptions import ModelCompatibilityError, ProviderError, ProviderFallbackWarning

__all__ = [
    "BATCH_MODES",
    "OnnxModel",
    "ProviderSpec",
    "RuntimeLimits",
    "TensorInfo",
    "runtime_limits",
]

logger = logging.getLogger(__name__)

BATCH_MODES = ("batched", "single")

# A provider name, or a (name, options) pair, exactly as onnxruntime.InferenceSession takes them.
ProviderSpec = Union[str, tuple[str, Mapping[str, Any]]]

CPU_PROVIDER = "CPUExecutionProvider"

# Input element types that coded queries can be cast to, with their NumPy dtype.
_CODABLE_INPUT_TYPES = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(double)": np.dtype(np.float64),
    "tensor(float16)": np.dtype(np.float16),
}

# onnxruntime element type names with a NumPy dtype. The others (bfloat16, float8, int4, ...)
# have none in NumPy itself.
_NUMPY_DTYPES = {
    "float": np.float32,
    "double": np.float64,
    "float16": np.float16,
    "int8": np.int8,
    "int16": np.int16,
    "int32": np.int32,
    "int64": np.int64,
    "uint8": np.uint8,
    "uint16": np.uint16,
    "uint32": np.uint32,
    "uint64": np.uint64,
    "bool": np.bool_,
    "string": np.object_,
}

# The exceptions onnxruntime raises when a model fails to load or run. Names missing from an
# older onnxruntime are skipped.
_RUNTIME_ERRORS = tuple(
    getattr(_ort_state, name)
    for name in (
        "Fail",
        "InvalidArgument",
        "InvalidGraph",
        "InvalidProtobuf",
        "NoSuchFile",
        "NoModel",
        "NotImplemented",
        "RuntimeException",
        "EPFail",
        "EngineError",
    )
    if hasattr(_ort_state, name)
)

# The load errors of onnxruntime 1.32 for a too new IR version or opset. Other wordings get the
# generic "failed to load" message.
_IR_ERROR_PATTERN = re.compile(r"Unsupported model IR version: (\d+), max supported IR version: (\d+)")
_OPSET_ERROR_PATTERN = re.compile(r"Opset (\d+) is under development.*?domain (\S+) is till opset (\d+)", re.S)

_DEFAULT_DOMAINS = ("", "ai.onnx")
_ML_DOMAIN = "ai.onnx.ml"


# --- What the installed onnxruntime accepts ------------------------------------------------------


@dataclass(frozen=True)
class RuntimeLimits:
    """The newest IR version and opsets that one onnxruntime release loads.

    Attributes
    ----------
    max_ir_version : int
    max_opset : int
        Newest opset of the default domain ("" or "ai.onnx").
    max_ml_opset : int
        Newest opset of the "ai.onnx.ml" domain.
    source : str
        Where the numbers come from.
    """

    max_ir_version: int
    max_opset: int
    max_ml_opset: int
    source: str

    def max_opset_for(self, domain: str) -> int | None:
        """Return the newest supported opset of `domain`, or None for domains not tracked here."""
        if domain in _DEFAULT_DOMAINS:
            return self.max_opset
        if domain == _ML_DOMAIN:
            return self.max_ml_opset
        return None


_COMPATIBILITY_DOCS = "onnxruntime docs/reference/compatibility.md"
_MEASURED = "measured: onnxruntime 1.32.0 loads these values and rejects the next higher ones"

# Keyed by onnxruntime (major, minor), because onnxruntime has no public API for these limits.
# NOTE: rows for 1.21 to 1.31 are missing because the compatibility page ends at 1.20 and only 1.32
# was measured. For those releases the check is skipped and onnxruntime's load error is translated.
_RUNTIME_LIMITS = {
    (1, 17): RuntimeLimits(9, 20, 4, _COMPATIBILITY_DOCS),
    (1, 18): RuntimeLimits(10, 21, 4, _COMPATIBILITY_DOCS),
    (1, 19): RuntimeLimits(10, 21, 4, _COMPATIBILITY_DOCS),
    (1, 20): RuntimeLimits(10, 21, 4, _COMPATIBILITY_DOCS),
    (1, 32): RuntimeLimits(14, 28, 5, _MEASURED),
}


def runtime_limits(version: str | None = None) -> RuntimeLimits | None:
    """Look up the newest IR version and opsets that an onnxruntime release loads.

    Parameters
    ----------
    version : str, optional
        An onnxruntime version such as "1.32.0"; defaults to the installed one.

    Returns
    -------
    RuntimeLimits or None
        None for releases missing from the table. `OnnxModel` then relies on onnxruntime's own
        load error, which it translates into the same message.
    """
    if version is None:
        version = ort.__version__
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None:
        return None
    return _RUNTIME_LIMITS.get((int(match.group(1)), int(match.group(2))))


def _ir_version_message(source: str, ir_version: int, max_ir_version: int) -> str:
    return (
        f"{source} has ONNX IR version {ir_version}, but onnxruntime {ort.__version__} loads IR "
        f"versions up to {max_ir_version}. Re-export it with an older exporter, or, if it uses no "
        f"newer IR features, set model.ir_version = {max_ir_version} and save it again with onnx.save"
    )


def _opset_message(source: str, domain: str, opset: int, max_opset: int) -> str:
    shown_domain = domain or "ai.onnx"
    if shown_domain == _ML_DOMAIN:
        fix = f"re-export it with {_ML_DOMAIN} opset {max_opset} or lower (skl2onnx: target_opset)"
    else:
        fix = (
            f"convert it with onnx.version_converter.convert_version(model, {max_opset}), or "
            f"re-export it with opset {max_opset} or lower (torch.onnx.export: opset_version)"
        )
    return (
        f"{source} imports opset {opset} of domain {shown_domain!r}, but onnxruntime "
        f"{ort.__version__} supports that domain up to opset {max_opset}; {fix}"
    )


def _check_versions(model: onnx.ModelProto, source: str) -> None:
    limits = runtime_limits()
    if limits is None:
        logger.debug(
            "no IR/opset limits known for onnxruntime %s; relying on its load errors", ort.__version__
        )
        return
    if model.ir_version > limits.max_ir_version:
        raise ModelCompatibilityError(_ir_version_message(source, model.ir_version, limits.max_ir_version))
    for opset_import in model.opset_import:
        max_opset = limits.max_opset_for(opset_import.domain)
        if max_opset is not None and opset_import.version > max_opset:
            raise ModelCompatibilityError(
                _opset_message(source, opset_import.domain, opset_import.version, max_opset)
            )


def _translate_load_error(error: Exception, source: str) -> ModelCompatibilityError:
    text = str(error)
    ir_match = _IR_ERROR_PATTERN.search(text)
    if ir_match:
        return ModelCompatibilityError(
            _ir_version_message(source, int(ir_match.group(1)), int(ir_match.group(2)))
        )
    opset_match = _OPSET_ERROR_PATTERN.search(text)
    if opset_match:
        return ModelCompatibilityError(
            _opset_message(source, opset_match.group(2), int(opset_match.group(1)), int(opset_match.group(3)))
        )
    return ModelCompatibilityError(f"onnxruntime {ort.__version__} failed to load {source}: {text.strip()}")


# --- Tensors ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorInfo:
    """Name, shape and element type of one model input or output.

    Attributes
    ----------
    name : str
    shape : tuple of (int or str or None)
        As onnxruntime reports it: an int for a fixed dimension, a str for a symbolic one and
        None for a dimension with neither. Empty for non-tensor values.
    type : str
        onnxruntime's type string, such as "tensor(float)" or "seq(map(int64,tensor(float)))".
    dtype : numpy.dtype or None
        Element dtype, None for non-tensor values and for element types NumPy lacks (bfloat16).
    decodable : bool
        Whether the value is a float16, float32 or float64 tensor, the only kind that Berrut
        decoding, an affine combination of worker outputs, can reconstruct.
    """

    name: str
    shape: tuple[int | str | None, ...]
    type: str
    dtype: np.dtype | None
    decodable: bool

    @classmethod
    def from_node_arg(cls, node_arg: Any) -> TensorInfo:
        """Describe an onnxruntime ``NodeArg`` from ``InferenceSession.get_inputs()`` or ``get_outputs()``."""
        dtype = None
        match = re.fullmatch(r"tensor\((\w+)\)", node_arg.type)
        if match and match.group(1) in _NUMPY_DTYPES:
            dtype = np.dtype(_NUMPY_DTYPES[match.group(1)])
        shape = tuple(node_arg.shape) if match else ()
        return cls(
            name=node_arg.name,
            shape=shape,
            type=node_arg.type,
            dtype=dtype,
            decodable=node_arg.type in _CODABLE_INPUT_TYPES,
        )


def _is_fixed(dimension: int | str | None) -> bool:
    return isinstance(dimension, int) and dimension > 0


def _check_input(inputs: Sequence[TensorInfo], source: str) -> TensorInfo:
    if len(inputs) != 1:
        names = [info.name for info in inputs]
        raise ModelCompatibilityError(
            f"{source} has {len(inputs)} inputs {names}, but coded inference needs exactly one "
            f"input tensor, because each coded query replaces one whole input; wrap the model so "
            f"that a single tensor feeds it"
        )
    info = inputs[0]
    if not info.type.startswith("tensor("):
        raise ModelCompatibilityError(
            f"input {info.name!r} of {source} has type {info.type}, but coded inference needs a "
            f"floating-point tensor input"
        )
    if info.dtype is not None and info.dtype.kind in "biu":
        raise ModelCompatibilityError(
            f"input {info.name!r} of {source} has integer or boolean type {info.type}; coded "
            f"queries are real-valued affine combinations of queries and cannot be cast to it. "
            f"Export the model with a float32 input, casting inside the graph if needed"
        )
    if info.type not in _CODABLE_INPUT_TYPES:
        raise ModelCompatibilityError(
            f"input {info.name!r} of {source} has type {info.type}, which this package cannot feed "
            f"because NumPy has no such dtype; supported input types are "
            f"{', '.join(_CODABLE_INPUT_TYPES)}. Export the model with a float32 or float16 input"
        )
    if not info.shape:
        raise ModelCompatibilityError(
            f"input {info.name!r} of {source} is a scalar, but coded inference needs a batch "
            f"dimension first, as in shape (batch, features)"
        )
    return info


def _query_shape(info: TensorInfo, input_shape: Sequence[int] | None, source: str) -> tuple[int, ...]:
    declared = info.shape[1:]
    if input_shape is None:
        symbolic = [dimension for dimension in declared if not _is_fixed(dimension)]
        if symbolic:
            raise ModelCompatibilityError(
                f"input {info.name!r} of {source} has shape {info.shape} with symbolic dimensions "
                f"{symbolic} besides the batch dimension; pass input_shape with the fixed shape of "
                f"one query, without the batch dimension ({len(declared)} dimensions)"
            )
        return tuple(int(dimension) for dimension in declared)

    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence):
        raise TypeError(f"input_shape must be a sequence of ints, got {type(input_shape).__name__} {input_shape!r}")
    requested = tuple(input_shape)
    if any(isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1 for size in requested):
        raise ValueError(f"input_shape must contain positive ints, got input_shape={requested}")
    if len(requested) != len(declared):
        raise ValueError(
            f"input_shape={requested} has {len(requested)} dimensions, but input {info.name!r} of "
            f"shape {info.shape} has {len(declared)} besides the batch dimension; give the shape of "
            f"one query without the batch dimension"
        )
    for axis, (size, dimension) in enumerate(zip(requested, declared), start=1):
        if _is_fixed(dimension) and size != dimension:
            raise ValueError(
                f"input_shape={requested} sets dimension {axis} of input {info.name!r} to {size}, "
                f"but the model fixes it to {dimension} (shape {info.shape})"
            )
    return tuple(int(size) for size in requested)


# --- Providers -------------------------------------------------------------------------------------


def _normalize_providers(providers: Sequence[ProviderSpec] | None) -> list[tuple[str, dict[str, Any]]]:
    if providers is None:
        return [(CPU_PROVIDER, {})]
    if isinstance(providers, (str, bytes)) or not isinstance(providers, Sequence):
        raise TypeError(
            f"providers must be a list of provider names or (name, options) tuples, got "
            f"{type(providers).__name__} {providers!r}; for one provider write [{providers!r}]"
        )
    if not providers:
        raise ValueError(f"providers must name at least one execution provider, got providers={providers!r}")

    normalized = []
    for entry in providers:
        if isinstance(entry, str):
            name, options = entry, {}
        elif (
            isinstance(entry, (tuple, list))
            and len(entry) == 2
            and isinstance(entry[0], str)
            and isinstance(entry[1], Mapping)
        ):
            name, options = entry[0], dict(entry[1])
        else:
            raise TypeError(
                f"each provider must be a name or a (name, options dict) tuple, got {entry!r}"
            )
        if name not in ort.get_all_providers():
            raise ValueError(
                f"invalid execution provider name {name!r}; valid names are "
                f"{', '.join(ort.get_all_providers())}, and this onnxruntime build has "
                f"{', '.join(ort.get_available_providers())}"
            )
        normalized.append((name, options))
    return normalized


# --- The model -------------------------------------------------------------------------------------


class OnnxModel:
    """An ONNX classifier checked for coded inference, with its batch behaviour probed.

    Loading runs these steps and raises at the first that fails:

    1. read the file;
    2. compare its IR version and opsets with what the installed onnxruntime loads;
    3. run ``onnx.checker``;
    4. create a session and check that there is exactly one floating-point input;
    5. run the model on zeros to find out whether its batch dimension really varies.

    Parameters
    ----------
    path : str, PathLike or onnx.ModelProto
        The .onnx file, or a model already loaded.
    providers : sequence of (str or (str, dict)), optional
        Execution providers in order of preference, as ``onnxruntime.InferenceSession`` takes
        them. Defaults to ``["CPUExecutionProvider"]``.
    strict_providers : bool
        Raise `ProviderError` when a requested provider is unavailable or not active in the
        session. When False, warn with `ProviderFallbackWarning` and run on the providers that
        are active, with CPUExecutionProvider last.
    session_options : onnxruntime.SessionOptions, optional
        Options of every session. `new_session` sets the thread counts for the duration of the
        session's creation and restores them afterwards.
    input_shape : sequence of int, optional
        Shape of one query, without the batch dimension. Required when the input has symbolic
        dimensions besides the batch dimension; must agree with its fixed dimensions.
    full_check : bool
        Run ``onnx.checker.check_model`` with strict shape inference. Set it to False for a model
        that onnxruntime runs although the strict inference rejects it.

    Attributes
    ----------
    path : pathlib.Path or None
        The model file, None for a model passed as a ModelProto.
    source : str
        The path, or a description of an in-memory model, as messages name the model.
    ir_version : int
        IR version stamped on the model.
    opset_imports : dict of str to int
        Opset version of each imported domain, the default domain written as "ai.onnx".
    batch_mode : {"batched", "single"}
        "batched" when the model accepts any batch size; "single" when its batch size is fixed
        (declared, or found to be 1 by the probe), so `run` feeds it chunks of `batch_size` rows.
    batch_size : int or None
        The fixed batch size in "single" mode, None in "batched" mode.
    query_shape : tuple of int
        Shape of one query: the input shape without the batch dimension.
    decodable_output_names : tuple of str
        Outputs that are float16, float32 or float64 tensors, in graph order; `run` returns these
        by default.
    output_shapes : dict of str to tuple of int
        Shape of one query's result for each decodable output, found by the probe.

    Raises
    ------
    FileNotFoundError
        The path does not exist or is a folder.
    ModelCompatibilityError
        The file is not ONNX, fails the checker, is too new for the installed onnxruntime, or
        cannot be coded: see the message.
    ProviderError
        With strict_providers=True, a requested provider is unavailable or not active.
    """

    def __init__(
        self,
        path: str | os.PathLike | onnx.ModelProto,
        providers: Sequence[ProviderSpec] | None = None,
        strict_providers: bool = False,
        session_options: ort.SessionOptions | None = None,
        *,
        input_shape: Sequence[int] | None = None,
        full_check: bool = True,
    ):
        if session_options is not None and not isinstance(session_options, ort.SessionOptions):
            raise TypeError(
                f"session_options must be an onnxruntime.SessionOptions, got {type(session_options).__name__}"
            )
        self._requested_providers = _normalize_providers(providers)
        self._strict_providers = bool(strict_providers)
        self._session_options = session_options
        self._options_lock = threading.Lock()
        self._reported_missing: set[str] = set()

        model = self._load(path)
        self.ir_version = int(model.ir_version)
        self.opset_imports = {(entry.domain or "ai.onnx"): int(entry.version) for entry in model.opset_import}
        _check_versions(model, self.source)
        self._check_model(model, full_check)

        self._session_providers = self._select_available_providers()
        self._default_session = self._create_session(session_options)
        self._report_missing_providers(self._default_session)

        self._inputs = tuple(TensorInfo.from_node_arg(arg) for arg in self._default_session.get_inputs())
        self._outputs = tuple(TensorInfo.from_node_arg(arg) for arg in self._default_session.get_outputs())
        self._input = _check_input(self._inputs, self.source)
        self.decodable_output_names = tuple(info.name for info in self._outputs if info.decodable)
        if not self.decodable_output_names:
            described = [f"{info.name} {info.type}" for info in self._outputs]
            raise ModelCompatibilityError(
                f"{self.source} has no floating-point output to decode, only {described}; export "
                f"the logits or probabilities as a float tensor output"
            )
        self.query_shape = _query_shape(self._input, input_shape, self.source)

        self.batch_mode, self.batch_size, self.output_shapes = self._probe_batch()
        logger.info(
            "loaded %s: IR %d, opsets %s, input %s %s %s, batch_mode %s, providers %s",
            self.source,
            self.ir_version,
            self.opset_imports,
            self._input.name,
            self._input.shape,
            self._input.type,
            self.batch_mode,
            self.active_providers,
        )

    # --- Loading and checking --------------------------------------------------------------------

    def _load(self, path: str | os.PathLike | onnx.ModelProto) -> onnx.ModelProto:
        if isinstance(path, onnx.ModelProto):
            self.path = None
            self.source = f"the in-memory model {path.graph.name!r}"
            self._session_source: str | bytes = path.SerializeToString()
            model = path
        elif isinstance(path, (str, os.PathLike)):
            self.path = Path(path)
            self.source = str(self.path)
            if not self.path.exists():
                raise FileNotFoundError(f"ONNX model file not found: {self.path}")
            if self.path.is_dir():
                raise FileNotFoundError(f"ONNX model path {self.path} is a folder; give the .onnx file in it")
            self._session_source = str(self.path)
            try:
                # External weights stay on disk: the checker and onnxruntime read them from the path.
                model = onnx.load(self.path, load_external_data=False)
            except DecodeError as error:
                raise ModelCompatibilityError(
                    f"{self.path} is not an ONNX model: it does not parse as an onnx.ModelProto "
                    f"({error}); give the file written by the ONNX exporter"
                ) from error
        else:
            raise TypeError(
                f"path must be a str, os.PathLike or onnx.ModelProto, got {type(path).__name__} {path!r}"
            )

        if model.ir_version == 0 or not model.HasField("graph"):
            raise ModelCompatibilityError(
                f"{self.source} is not an ONNX model: it has no IR version or no graph; give the "
                f"file written by the ONNX exporter"
            )
        return model

    def _check_model(self, model: onnx.ModelProto, full_check: bool) -> None:
        # The checker rejects every IR version above its own, even one that onnxruntime loads.
        if model.ir_version > onnx.IR_VERSION:
            logger.warning(
                "skipping onnx.checker for %s: its IR version %d is newer than onnx %s checks (%d)",
                self.source,
                model.ir_version,
                onnx.__version__,
                onnx.IR_VERSION,
            )
            return

        checked = str(self.path) if self.path is not None else model
        try:
            onnx.checker.check_model(checked, full_check=full_check)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
            fix = "; if onnxruntime runs it anyway, pass full_check=False" if full_check else ""
            raise ModelCompatibilityError(
                f"onnx.checker rejected {self.source}: {str(error).strip()}{fix}"
            ) from error

    # --- Sessions and providers ------------------------------------------------------------------

    @property
    def requested_providers(self) -> tuple[str, ...]:
        """Names of the requested execution providers, in order of preference."""
        return tuple(name for name, _ in self._requested_providers)

    @property
    def active_providers(self) -> tuple[str, ...]:
        """Names of the providers that the model's sessions run on, as onnxruntime reports them."""
        return tuple(self._default_session.get_providers())

    def _select_available_providers(self) -> list[tuple[str, dict[str, Any]]]:
        available = ort.get_available_providers()
        missing = [name for name, _ in self._requested_providers if name not in available]
        selected = [(name, options) for name, options in self._requested_providers if name in available]
        if not any(name == CPU_PROVIDER for name, _ in selected):
            selected.append((CPU_PROVIDER, {}))
        if missing:
            self._handle_missing_providers(
                missing,
                f"this onnxruntime {ort.__version__} build lacks {missing} "
                f"(available: {', '.join(available)})",
            )
        return selected

    def _report_missing_providers(self, session: ort.InferenceSession) -> None:
        # onnxruntime drops a provider that fails to initialise (a CUDA build on a machine
        # without a usable GPU, say) and falls back to CPU without raising.
        active = session.get_providers()
        missing = [name for name in self.requested_providers if name not in active]
        if missing:
            self._handle_missing_providers(
                missing,
                f"onnxruntime {ort.__version__} did not activate {missing} (active: {', '.join(active)})",
            )

    def _handle_missing_providers(self, missing: list[str], reason: str) -> None:
        # Called from a helper of __init__ or new_session, so stacklevel 4 names their caller.
        if self._strict_providers:
            raise ProviderError(
                f"requested execution providers {list(self.requested_providers)} for {self.source}, "
                f"but {reason}; install the onnxruntime package built for them (for CUDA, "
                f"onnxruntime-gpu) and check the drivers, or allow the fall-back to CPU "
                "(strict_providers=False, or leave out --strict-providers)"
            )
        if set(missing) <= self._reported_missing:
            return
        self._reported_missing.update(missing)
        message = f"{self.source}: {reason}; running on the remaining providers, CPU last"
        logger.warning("provider fallback: %s", message)
        warnings.warn(message, ProviderFallbackWarning, stacklevel=4)

    def _create_session(self, session_options: ort.SessionOptions | None) -> ort.InferenceSession:
        try:
            return ort.InferenceSession(
                self._session_source, sess_options=session_options, providers=self._session_providers
            )
        except _RUNTIME_ERRORS as error:
            raise _translate_load_error(error, self.source) from error

    def new_session(self, intra_op_threads: int = 1, inter_op_threads: int = 1) -> ort.InferenceSession:
        """Create another session of the model on the same providers, for one worker.

        Parameters
        ----------
        intra_op_threads, inter_op_threads : int, >= 0
            Threads within one operator and across operators; 0 lets onnxruntime choose.

        Returns
        -------
        onnxruntime.InferenceSession

        Raises
        ------
        ProviderError
            With strict_providers=True, when a requested provider is not active in the session.
        """
        for name, value in (("intra_op_threads", intra_op_threads), ("inter_op_threads", inter_op_threads)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
            if value < 0:
                raise ValueError(f"{name} must be at least 0 (0: onnxruntime chooses), got {name}={value}")

        if self._session_options is None:
            options = ort.SessionOptions()
            options.intra_op_num_threads = int(intra_op_threads)
            options.inter_op_num_threads = int(inter_op_threads)
            session = self._create_session(options)
        else:
            # onnxruntime copies the options when it creates the session, so the caller's object is
            # changed only while the lock is held.
            options = self._session_options
            with self._options_lock:
                saved = (options.intra_op_num_threads, options.inter_op_num_threads)
                options.intra_op_num_threads = int(intra_op_threads)
                options.inter_op_num_threads = int(inter_op_threads)
                try:
                    session = self._create_session(options)
                finally:
                    options.intra_op_num_threads, options.inter_op_num_threads = saved

        self._report_missing_providers(session)
        return session

    # --- Inputs, outputs and the batch probe -----------------------------------------------------

    @property
    def input(self) -> TensorInfo:
        """The model's single input."""
        return self._input

    @property
    def inputs(self) -> tuple[TensorInfo, ...]:
        """All graph inputs, initializers excluded: always exactly `input`."""
        return self._inputs

    @property
    def outputs(self) -> tuple[TensorInfo, ...]:
        """All graph outputs, decodable or not."""
        return self._outputs

    @property
    def input_dtype(self) -> np.dtype:
        """NumPy dtype that `run` casts queries to: float16, float32 or float64."""
        return self._input.dtype

    def _probe_batch(self) -> tuple[str, int | None, dict[str, tuple[int, ...]]]:
        declared = self._input.shape[0]
        if _is_fixed(declared):
            shapes = self._probe_outputs(int(declared))
            return "single", int(declared), shapes

        try:
            shapes = self._probe_outputs(2)
        except ModelCompatibilityError as error:
            logger.warning(
                "%s declares a dynamic batch dimension %r but fails at batch size 2, so queries "
                "will run one at a time: %s",
                self.source,
                declared,
                error,
            )
        else:
            return "batched", None, shapes
        return "single", 1, self._probe_outputs(1)

    def _probe_outputs(self, batch_size: int) -> dict[str, tuple[int, ...]]:
        zeros = np.zeros((batch_size, *self.query_shape), dtype=self.input_dtype)
        run_options = ort.RunOptions()
        run_options.log_severity_level = 4  # mutes onnxruntime's error log: this method reports failures
        try:
            results = self._default_session.run(
                list(self.decodable_output_names), {self._input.name: zeros}, run_options
            )
        except _RUNTIME_ERRORS as error:
            raise ModelCompatibilityError(
                f"{self.source} failed on a batch of {batch_size} queries of shape "
                f"{self.query_shape}: {str(error).strip()}"
            ) from error

        shapes = {}
        for name, result in zip(self.decodable_output_names, results):
            if result.ndim == 0 or result.shape[0] != batch_size:
                raise ModelCompatibilityError(
                    f"output {name!r} of {self.source} has shape {result.shape} for a batch of "
                    f"{batch_size} queries, but coded inference needs one result row per query"
                )
            shapes[name] = tuple(result.shape[1:])
        return shapes

    # --- Running ---------------------------------------------------------------------------------

    def run(
        self,
        session: ort.InferenceSession,
        x: np.ndarray,
        output_names: Sequence[str] | None = None,
        run_options: ort.RunOptions | None = None,
    ) -> list[np.ndarray]:
        """Run `session` on a batch of queries and return float64 outputs.

        Parameters
        ----------
        session : onnxruntime.InferenceSession
            A session of this model, from `new_session`.
        x : ndarray, shape (B, *query_shape)
            Queries of any real dtype, cast here to `input_dtype`. B may be 0.
        output_names : sequence of str, optional
            Decodable outputs to return; defaults to `decodable_output_names`.
        run_options : onnxruntime.RunOptions, optional
            Passed to every ``session.run`` call, so setting ``terminate`` stops the rest.

        Returns
        -------
        list of ndarray, each of shape (B, *output_shapes[name]), float64

        Raises
        ------
        TypeError, ValueError
            x has a dtype that is not real or a shape other than (B, *query_shape), or an output
            name is unknown or not decodable.
        ModelCompatibilityError
            An output lost the batch dimension.
        onnxruntime exceptions
            Whatever ``session.run`` raises, unchanged, so that callers can count the failure.
        """
        names = self._check_output_names(output_names)
        queries = self._cast_queries(x)
        if len(queries) == 0:
            return [np.empty((0, *self.output_shapes[name])) for name in names]
        if self.batch_mode == "batched":
            results = self._run_chunk(session, queries, names, run_options)
        else:
            results = self._run_fixed_batches(session, queries, names, run_options)
        return [np.asarray(result, dtype=np.float64) for result in results]

    def predict(self, x: np.ndarray, output_names: Sequence[str] | None = None) -> list[np.ndarray]:
        """Run the model directly, without coding, on the session created at load time.

        Parameters and returned arrays are those of `run`.
        """
        return self.run(self._default_session, x, output_names)

    def _check_output_names(self, output_names: Sequence[str] | None) -> list[str]:
        if output_names is None:
            return list(self.decodable_output_names)
        if isinstance(output_names, str):
            raise TypeError(f"output_names must be a list of names, got the str {output_names!r}; write [{output_names!r}]")
        names = list(output_names)
        all_names = [info.name for info in self._outputs]
        for name in names:
            if name not in all_names:
                raise ValueError(f"output {name!r} not found; the outputs of {self.source} are {all_names}")
            if name not in self.decodable_output_names:
                raise ValueError(
                    f"output {name!r} of {self.source} is not a floating-point tensor and cannot be "
                    f"decoded; request one of {list(self.decodable_output_names)}"
                )
        return names

    def _cast_queries(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype.kind not in "fiu":
            raise TypeError(f"x must hold real numbers (float or int), got dtype {x.dtype}")
        if x.shape[1:] != self.query_shape or x.ndim != len(self.query_shape) + 1:
            raise ValueError(
                f"x must have shape (batch, *{self.query_shape}) for input {self._input.name!r}, "
                f"got {x.shape}; reshape the queries to query_shape={self.query_shape}"
            )
        with np.errstate(over="ignore"):
            queries = np.ascontiguousarray(x, dtype=self.input_dtype)

        # Coded queries extrapolate a little beyond the real ones, which float16 may not hold.
        if queries.dtype.itemsize < x.dtype.itemsize and x.dtype.kind == "f":
            overflowed = int(np.count_nonzero(np.isfinite(x) & ~np.isfinite(queries)))
            if overflowed:
                logger.warning(
                    "%d finite query values of %s overflowed to inf when cast to %s (largest: %g); "
                    "scale the inputs down",
                    overflowed,
                    self.source,
                    queries.dtype,
                    float(np.finfo(queries.dtype).max),
                )
        return queries

    def _run_chunk(
        self,
        session: ort.InferenceSession,
        chunk: np.ndarray,
        names: list[str],
        run_options: ort.RunOptions | None,
    ) -> list[np.ndarray]:
        results = session.run(names, {self._input.name: chunk}, run_options)
        for name, result in zip(names, results):
            if result.ndim == 0 or result.shape[0] != len(chunk):
                raise ModelCompatibilityError(
                    f"output {name!r} of {self.source} has shape {result.shape} for a batch of "
                    f"{len(chunk)} queries, but coded inference needs one result row per query"
                )
        return results

    def _run_fixed_batches(
        self,
        session: ort.InferenceSession,
        queries: np.ndarray,
        names: list[str],
        run_options: ort.RunOptions | None,
    ) -> list[np.ndarray]:
        # The last chunk is padded by repeating its last query, and the padded rows are dropped.
        pieces: list[list[np.ndarray]] = [[] for _ in names]
        for start in range(0, len(queries), self.batch_size):
            chunk = queries[start : start + self.batch_size]
            rows = len(chunk)
            if rows < self.batch_size:
                padding = np.repeat(chunk[-1:], self.batch_size - rows, axis=0)
                chunk = np.concatenate([chunk, padding])
            for piece, result in zip(pieces, self._run_chunk(session, chunk, names, run_options)):
                piece.append(result[:rows])
        return [np.concatenate(piece) for piece in pieces]

    def __repr__(self) -> str:
        return (
            f"OnnxModel({self.source!r}, input={self._input.name} {self._input.shape} "
            f"{self._input.type}, batch_mode={self.batch_mode!r}, providers={list(self.active_providers)})"
        )
