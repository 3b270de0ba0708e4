"""Model zoo: timm and torchvision classifiers trained on the CPU and exported to ONNX.

The registry needs only the standard library; training, export and `build` need the ``zoo``
extra (torch, timm) and import it on first use.
"""

from model_zoo.registry import ZooEntry, get_entry, list_models, register

__all__ = [
    "ZooEntry",
    "build",
    "cache_root",
    "default_model_path",
    "evaluate_onnx",
    "export_onnx",
    "get_entry",
    "list_models",
    "register",
    "train",
]

_LAZY = {
    "build": "model_zoo.build",
    "cache_root": "model_zoo.build",
    "default_model_path": "model_zoo.build",
    "evaluate_onnx": "model_zoo.build",
    "export_onnx": "model_zoo.export",
    "train": "model_zoo.training",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'model_zoo' has no attribute {name!r}")
