"""Export a trained network to a single ONNX file and check it against torch."""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch

__all__ = ["ExportCheck", "ExportMismatchError", "OPSET", "export_onnx"]

logger = logging.getLogger(__name__)

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


class ExportMismatchError(RuntimeError):
    """onnxruntime's outputs for an exported model differ from torch's beyond the tolerance."""


@dataclasses.dataclass(frozen=True)
class ExportCheck:
    """Comparison of an exported file with the torch network it came from.

    Attributes
    ----------
    max_abs_diff : float
        Largest absolute difference between onnxruntime and torch logits over the check batches.
    rtol, atol : float
        Tolerance the difference was checked against:
        ``|ort - torch| <= atol + rtol * |torch|`` elementwise.
    batch_sizes : tuple of int
        Batch sizes that were run, to confirm the batch dimension is dynamic.
    ir_version : int
        IR version of the written file.
    opset : int
        Default-domain opset of the written file.
    """

    max_abs_diff: float
    rtol: float
    atol: float
    batch_sizes: tuple[int, ...]
    ir_version: int
    opset: int

    def to_dict(self) -> dict:
        """Return the fields as a JSON-ready dict."""
        data = dataclasses.asdict(self)
        data["batch_sizes"] = list(self.batch_sizes)
        return data


def export_onnx(
    model: torch.nn.Module,
    path: str | Path,
    input_shape: tuple[int, ...],
    *,
    check_inputs: np.ndarray | None = None,
    rtol: float = 1e-3,
    atol: float = 1e-4,
    rng: np.random.Generator | int | None = 0,
) -> ExportCheck:
    """Write ``model`` to ``path`` as one ONNX file with a dynamic batch dimension.

    The classic TorchScript exporter (``dynamo=False``) writes the weights inside the file.
    The model is put in eval mode first so BatchNorm exports its running statistics.

    Parameters
    ----------
    model : torch.nn.Module
        Takes float32 (B, *input_shape) and returns logits (B, C).
    path : str or Path
        Output file. It is written to a temporary name and renamed, so a failed export leaves
        no file behind.
    input_shape : tuple of int
        Shape (C, H, W) of one input, without the batch dimension.
    check_inputs : ndarray of float32, shape (B, *input_shape), optional
        Real inputs to compare onnxruntime against torch on. Defaults to 16 uniform samples
        in [0, 1] drawn from ``rng``.
    rtol, atol : float
        Elementwise tolerance ``|ort - torch| <= atol + rtol * |torch|``.
    rng : numpy.random.Generator or int or None
        Source of the default check inputs.

    Returns
    -------
    ExportCheck

    Raises
    ------
    ExportMismatchError
        If onnxruntime's logits differ from torch's beyond the tolerance; no file is left.
    """
    path = Path(path)
    input_shape = tuple(int(d) for d in input_shape)
    if check_inputs is None:
        check_inputs = np.random.default_rng(rng).random((16, *input_shape), dtype=np.float32)
    check_inputs = np.ascontiguousarray(check_inputs, dtype=np.float32)
    if check_inputs.shape[1:] != input_shape or len(check_inputs) < 2:
        raise ValueError(
            f"check_inputs must have shape (B >= 2, {', '.join(map(str, input_shape))}), "
            f"got {check_inputs.shape}."
        )

    model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name of this process, not tempfile.mkstemp, so the file gets the umask's permissions
    # (mkstemp creates it readable by the owner only).
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        _write_onnx(model, temporary, input_shape)
        check = _check_against_torch(model, temporary, check_inputs, rtol, atol)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    logger.info(
        "exported %s (IR %d, opset %d, %.1f MB); max |onnxruntime - torch| = %.2e",
        path, check.ir_version, check.opset, path.stat().st_size / 1e6, check.max_abs_diff,
    )
    return check


def _write_onnx(model: torch.nn.Module, path: Path, input_shape: tuple[int, ...]) -> None:
    example = torch.zeros((2, *input_shape), dtype=torch.float32)
    with warnings.catch_warnings():
        # torch 2.9 and later mark the TorchScript exporter as legacy. The zoo uses it because
        # it keeps the weights inside the single .onnx file.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        with torch.inference_mode():
            torch.onnx.export(
                model,
                (example,),
                str(path),
                dynamo=False,
                opset_version=OPSET,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                do_constant_folding=True,
            )

    proto = onnx.load(str(path), load_external_data=False)
    external = [
        tensor.name
        for tensor in proto.graph.initializer
        if onnx.external_data_helper.uses_external_data(tensor)
    ]
    if external:
        raise ExportMismatchError(
            f"export wrote {len(external)} tensors to external data (first: {external[0]!r}); "
            "the zoo needs every weight inside the .onnx file."
        )
    onnx.checker.check_model(proto)


def _check_against_torch(
    model: torch.nn.Module, path: Path, inputs: np.ndarray, rtol: float, atol: float
) -> ExportCheck:
    proto = onnx.load(str(path), load_external_data=False)
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        str(path), options, providers=["CPUExecutionProvider"]
    )

    # A batch of one and the full batch show that the batch dimension really is dynamic.
    batches = [inputs[:1], inputs]
    max_abs_diff = 0.0
    for batch in batches:
        with torch.inference_mode():
            expected = model(torch.from_numpy(batch)).numpy()
        (actual,) = session.run([OUTPUT_NAME], {INPUT_NAME: batch})
        if actual.shape != expected.shape:
            raise ExportMismatchError(
                f"onnxruntime returned logits of shape {actual.shape} for a batch of "
                f"{len(batch)}, torch returned {expected.shape}."
            )
        difference = np.abs(actual.astype(np.float64) - expected)
        max_abs_diff = max(max_abs_diff, float(difference.max()))
        bound = atol + rtol * np.abs(expected)
        if np.any(difference > bound):
            worst = np.unravel_index(np.argmax(difference - bound), difference.shape)
            raise ExportMismatchError(
                f"onnxruntime and torch logits differ beyond atol={atol:g}, rtol={rtol:g} on a "
                f"batch of {len(batch)}: max |difference| = {difference.max():.3e}, worst at "
                f"index {tuple(int(i) for i in worst)} (onnxruntime {actual[worst]:.6g}, torch "
                f"{expected[worst]:.6g}). Check that the model is in eval mode and uses only "
                f"ops that opset {opset} exports faithfully."
            )
    return ExportCheck(
        max_abs_diff=max_abs_diff,
        rtol=rtol,
        atol=atol,
        batch_sizes=tuple(len(b) for b in batches),
        ir_version=int(proto.ir_version),
        opset=int(opset),
    )
