"""Manifests: the JSON record written beside every zoo ONNX file."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "MANIFEST_FORMAT",
    "file_sha256",
    "manifest_path",
    "package_versions",
    "hardware_summary",
    "read_manifest",
    "write_manifest",
]

MANIFEST_FORMAT = 1

_VERSIONED_PACKAGES = ("torch", "torchvision", "timm", "onnx", "onnxruntime", "numpy")


def manifest_path(model_path: str | Path) -> Path:
    """Return the manifest path for a model: the same name with the suffix ``.json``."""
    return Path(model_path).with_suffix(".json")


def file_sha256(path: str | Path) -> str:
    """Return the hex SHA-256 digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def package_versions() -> dict[str, str | None]:
    """Return the installed version of each package that shapes a zoo model (None if absent)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def hardware_summary(threads: int | None) -> dict[str, Any]:
    """Describe the machine a model was trained on."""
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "platform": platform.platform(),
    }


def utc_now() -> str:
    """Return the current UTC time in ISO 8601 with seconds."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def write_manifest(model_path: str | Path, manifest: dict[str, Any]) -> Path:
    """Write ``manifest`` beside ``model_path`` atomically and return the manifest's path."""
    path = manifest_path(model_path)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    os.replace(temporary, path)
    return path


def read_manifest(model_path: str | Path) -> dict[str, Any] | None:
    """Return the manifest beside ``model_path``, or None if it is missing or not valid JSON."""
    path = manifest_path(model_path)
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def command_argv() -> list[str]:
    """Return this process's argument vector."""
    return list(sys.argv)
