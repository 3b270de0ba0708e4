"""Training hyper-parameters, kept free of torch so the command line starts fast."""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["TrainConfig"]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run; everything here is recorded in the manifest.

    Parameters
    ----------
    epochs : int >= 1
        Passes over the training set.
    batch_size : int >= 1
        Images per optimiser step; the last, smaller batch of an epoch is dropped.
    lr : float > 0
        Peak learning rate, reached by a linear warm-up and followed by a cosine decay to 0.
    weight_decay : float >= 0
        Decoupled weight decay (AdamW) or L2 penalty (SGD).
    optimizer : {"adamw", "sgd"}
        AdamW, or SGD with Nesterov momentum 0.9.
    label_smoothing : float in [0, 1)
        Label smoothing of the cross-entropy loss.
    augment : bool
        Shift each training image by up to 2 pixels and flip it horizontally with probability 1/2.
    warmup_fraction : float in (0, 1)
        Fraction of the steps spent raising the learning rate to ``lr``.
    seed : int
        Seeds the weight initialisation, the shuffling and the augmentation.
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    optimizer: str = "adamw"
    label_smoothing: float = 0.05
    augment: bool = True
    warmup_fraction: float = 0.25
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be an integer >= 1, got {self.epochs!r}.")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {self.batch_size!r}.")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}.")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}.")
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {self.optimizer!r}.")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(
                f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}."
            )
        if not 0 < self.warmup_fraction < 1:
            raise ValueError(
                f"warmup_fraction must be in (0, 1), got {self.warmup_fraction!r}."
            )

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-ready dict."""
        return dataclasses.asdict(self)
