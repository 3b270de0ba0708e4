"""Registry of the architectures that the zoo can train, as typed entries."""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
from typing import Any, Literal

__all__ = ["ZooEntry", "get_entry", "list_models", "register"]

Source = Literal["timm", "torchvision"]
Head = Literal["default", "linear"]


@dataclasses.dataclass(frozen=True)
class ZooEntry:
    """One architecture that the zoo builds, trains and exports.

    Parameters
    ----------
    name : str
        Registry name, used on the command line and in cache paths.
    source : {"timm", "torchvision"}
        Library that constructs the network.
    arch : str
        Architecture name inside ``source`` (``timm.create_model`` name or
        ``torchvision.models`` builder name).
    kwargs : tuple of (str, object) pairs
        Extra keyword arguments for the constructor, as pairs so the entry stays hashable.
    input_size : tuple of int
        Image shape (C, H, W) of the default dataset. A dataset with other images (CIFAR-10,
        scikit-learn's 8 x 8 digits) builds the same architecture for its own shape.
    pad_to : int or None
        When set, the network receives any image smaller than ``pad_to`` zero-padded to a
        ``pad_to`` x ``pad_to`` square. The padding is part of the exported graph, so callers
        still send the dataset's image shape.
    head : {"default", "linear"}
        ``"linear"`` drops the architecture's classifier and puts global average pooling and one
        linear layer on the output of ``forward_features`` (timm models only).
    description : str
        One line shown by ``list_models`` on the command line.
    """

    name: str
    source: Source
    arch: str
    kwargs: tuple[tuple[str, Any], ...] = ()
    input_size: tuple[int, int, int] = (1, 28, 28)
    pad_to: int | None = None
    head: Head = "default"
    description: str = ""

    def __post_init__(self):
        if self.source not in ("timm", "torchvision"):
            raise ValueError(
                f"ZooEntry {self.name!r}: source must be 'timm' or 'torchvision', "
                f"got {self.source!r}."
            )
        if self.head not in ("default", "linear"):
            raise ValueError(
                f"ZooEntry {self.name!r}: head must be 'default' or 'linear', got {self.head!r}."
            )
        if self.head == "linear" and self.source != "timm":
            raise ValueError(
                f"ZooEntry {self.name!r}: head='linear' needs a timm model (it calls "
                f"forward_features), got source={self.source!r}; use head='default'."
            )
        if self.pad_to is not None and self.pad_to < max(self.input_size[1:]):
            raise ValueError(
                f"ZooEntry {self.name!r}: pad_to={self.pad_to} must be at least the image size "
                f"{self.input_size[1:]}; use pad_to=None to feed the image unpadded."
            )

    @property
    def constructor_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the constructor, as a new dict."""
        return dict(self.kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Return the entry as JSON-ready data, as stored in manifests."""
        return {
            "name": self.name,
            "source": self.source,
            "arch": self.arch,
            "kwargs": self.constructor_kwargs,
            "input_size": list(self.input_size),
            "pad_to": self.pad_to,
            "head": self.head,
        }


_REGISTRY: dict[str, ZooEntry] = {}


def register(entry: ZooEntry) -> ZooEntry:
    """Add ``entry`` to the registry and return it.

    Raises
    ------
    ValueError
        If another entry already uses ``entry.name``.
    """
    if entry.name in _REGISTRY and _REGISTRY[entry.name] != entry:
        raise ValueError(
            f"zoo model {entry.name!r} is already registered with a different definition; "
            "pick another name."
        )
    _REGISTRY[entry.name] = entry
    return entry


def list_models(pattern: str = "*") -> list[str]:
    """Return the sorted names of the registered models that match a shell-style ``pattern``."""
    return sorted(name for name in _REGISTRY if fnmatch.fnmatchcase(name, pattern))


def get_entry(name: str) -> ZooEntry:
    """Return the registered entry called ``name``.

    Raises
    ------
    KeyError
        If no model has that name; the message lists close matches.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        pass
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    raise KeyError(
        f"unknown zoo model {name!r}; {hint}"
        f"run 'python -m model_zoo list' to see all {len(_REGISTRY)} models."
    )


# Every entry builds from scratch (pretrained weights are requested only by `build`'s
# ``pretrained`` option), for 28 x 28 greyscale images such as Fashion-MNIST. Parameter counts are
# for 10 classes and 1 input channel. At 28 x 28, VGG, DenseNet and ConvNeXt fail in torch (a
# feature map shrinks below their pooling or downsampling kernels), so their entries pad to 32.
register(ZooEntry(
    name="resnet18",
    source="timm",
    arch="resnet18",
    description="ResNet-18 (11.2M parameters)",
))
register(ZooEntry(
    name="resnet34",
    source="timm",
    arch="resnet34",
    description="ResNet-34 (21.3M parameters)",
))
# timm's VGG head is a 7 x 7 convolution to 4096 channels (103M parameters for 512 input
# channels) that pools adaptively when the feature map is smaller, which the TorchScript exporter
# rejects. Global average pooling and one linear layer replace it: 9.2M parameters, a 37 MB file.
register(ZooEntry(
    name="vgg11_bn",
    source="timm",
    arch="vgg11_bn",
    pad_to=32,
    head="linear",
    description="VGG-11 with batch norm, pooled linear head (9.2M parameters)",
))
register(ZooEntry(
    name="densenet121",
    source="timm",
    arch="densenet121",
    pad_to=32,
    description="DenseNet-121 (7.0M parameters)",
))
register(ZooEntry(
    name="mobilenetv3_small_100",
    source="timm",
    arch="mobilenetv3_small_100",
    description="MobileNetV3-Small 1.0 (1.5M parameters)",
))
register(ZooEntry(
    name="efficientnet_b0",
    source="timm",
    arch="efficientnet_b0",
    description="EfficientNet-B0 (4.0M parameters)",
))
register(ZooEntry(
    name="convnext_atto",
    source="timm",
    arch="convnext_atto",
    pad_to=32,
    description="ConvNeXt-Atto (3.4M parameters)",
))
# ViT-Tiny's width (192) and heads (3) with 6 blocks instead of 12, on 4 x 4 patches of the image
# padded to 32 x 32: 64 patch tokens plus the class token.
register(ZooEntry(
    name="vit_tiny_p4_32",
    source="timm",
    arch="vit_tiny_patch16_224",
    kwargs=(("img_size", 32), ("patch_size", 4), ("depth", 6)),
    pad_to=32,
    description="ViT-Tiny, 6 blocks, patch 4 on 32 x 32 (2.7M parameters)",
))
register(ZooEntry(
    name="regnetx_002",
    source="timm",
    arch="regnetx_002",
    description="RegNetX-200MF (2.3M parameters)",
))
register(ZooEntry(
    name="lcnet_100",
    source="timm",
    arch="lcnet_100",
    description="PP-LCNet 1.0 (1.7M parameters)",
))
register(ZooEntry(
    name="resnet18_tv",
    source="torchvision",
    arch="resnet18",
    description="torchvision ResNet-18 (11.2M parameters)",
))
# NOTE: torchvision's MobileNetV3 uses BatchNorm momentum 0.01, so after a short training the
# running statistics lag the weights: one epoch of 312 steps on Fashion-MNIST reached 0.72
# training accuracy but 0.10 test accuracy in eval mode. Train it for several epochs.
register(ZooEntry(
    name="mobilenet_v3_small_tv",
    source="torchvision",
    arch="mobilenet_v3_small",
    description="torchvision MobileNetV3-Small (1.5M parameters)",
))
