"""Approximate coded inference (ApproxIFER) for any ONNX classifier."""

__version__ = "0.1.0"
