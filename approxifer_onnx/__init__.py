"""Approximate coded inference (ApproxIFER) for any ONNX classifier.

The entry point is `CodedInferenceSession`, which mirrors `onnxruntime.InferenceSession`.
"""

from .coding import NODE_FAMILIES, BerrutCode
from .data import Dataset, load_dataset
from .exceptions import (
    ApproxiferError,
    DataError,
    DecodingError,
    ModelCompatibilityError,
    NotEnoughResultsError,
    ProviderError,
    ProviderFallbackWarning,
)
from .faults import FaultPlan
from .model import OnnxModel, TensorInfo
from .session import CodedInferenceSession, GroupReport, RunReport

__version__ = "0.1.0"

__all__ = [
    "NODE_FAMILIES",
    "ApproxiferError",
    "BerrutCode",
    "CodedInferenceSession",
    "DataError",
    "Dataset",
    "DecodingError",
    "FaultPlan",
    "GroupReport",
    "ModelCompatibilityError",
    "NotEnoughResultsError",
    "OnnxModel",
    "ProviderError",
    "ProviderFallbackWarning",
    "RunReport",
    "TensorInfo",
    "load_dataset",
]
