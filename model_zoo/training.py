"""Train a zoo architecture from scratch on the CPU."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from model_zoo.recipe import TrainConfig
from model_zoo.registry import ZooEntry

__all__ = ["TrainConfig", "TrainResult", "create_model", "evaluate", "predict_logits", "train"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainResult:
    """A trained network in eval mode and its training record.

    Attributes
    ----------
    model : torch.nn.Module
        The network, in eval mode (BatchNorm uses its running statistics).
    history : list of dict
        Per epoch: ``epoch``, ``train_loss``, ``train_accuracy`` (over the augmented batches),
        ``lr_end`` and ``seconds``.
    wall_time_s : float
        Seconds spent in the training loop.
    steps : int
        Optimiser steps taken.
    """

    model: Any
    history: list[dict[str, float]]
    wall_time_s: float
    steps: int


def create_model(
    entry: ZooEntry, num_classes: int, image_size: tuple[int, int, int] | None = None, *,
    pretrained: bool = False,
):
    """Build ``entry``'s network for ``image_size`` images.

    Parameters
    ----------
    entry : ZooEntry
    num_classes : int
        Size of the classifier's output.
    image_size : tuple of int, optional
        Image shape (C, H, W); defaults to ``entry.input_size``.
    pretrained : bool
        Ask timm for its pretrained weights, which it downloads on first use and adapts to
        ``C`` input channels and ``num_classes`` outputs (the classifier starts from random
        weights). False builds random weights and never touches the network.

    Returns
    -------
    torch.nn.Module
        Takes (B, *image_size) float32 and returns logits (B, num_classes).
    """
    channels, height, width = image_size if image_size is not None else entry.input_size
    if entry.source == "timm":
        import timm

        network = timm.create_model(
            entry.arch,
            pretrained=pretrained,
            num_classes=num_classes,
            in_chans=channels,
            **entry.constructor_kwargs,
        )
    else:
        if pretrained:
            raise ValueError(
                f"zoo model {entry.name!r} comes from torchvision; pretrained weights are only "
                "available for timm models. Drop pretrained or pass weights=FILE."
            )
        import torchvision

        builder = getattr(torchvision.models, entry.arch, None)
        if builder is None:
            raise ValueError(
                f"zoo model {entry.name!r}: torchvision.models has no builder {entry.arch!r}."
            )
        network = builder(weights=None, num_classes=num_classes, **entry.constructor_kwargs)
        network = _adapt_torchvision_channels(network, channels)

    if entry.head == "linear":
        network = _PooledLinearHead(network, num_classes)
    if entry.pad_to is None or (height >= entry.pad_to and width >= entry.pad_to):
        return network
    return _PaddedInput(network, (height, width), entry.pad_to)


class _PooledLinearHead(torch.nn.Module):
    """Global average pooling and one linear layer on a timm network's ``forward_features``."""

    def __init__(self, network, num_classes: int):
        super().__init__()
        # timm's convention: forward_features never uses the classifier modules, so they are
        # dropped here to keep their parameters out of the optimiser and the exported file.
        for attribute in ("pre_logits", "head", "fc", "classifier"):
            if isinstance(getattr(network, attribute, None), torch.nn.Module):
                setattr(network, attribute, torch.nn.Identity())
        self.network = network
        self.fc = torch.nn.Linear(network.num_features, num_classes)

    def forward(self, x):
        return self.fc(self.network.forward_features(x).mean(dim=(2, 3)))


def _adapt_torchvision_channels(network, channels: int):
    """Replace the first convolution of a torchvision network when the images are not RGB."""
    if channels == 3:
        return network
    for name, module in network.named_modules():
        if isinstance(module, torch.nn.Conv2d) and module.in_channels == 3:
            replacement = torch.nn.Conv2d(
                channels,
                module.out_channels,
                kernel_size=module.kernel_size,
                stride=module.stride,
                padding=module.padding,
                dilation=module.dilation,
                groups=1,
                bias=module.bias is not None,
            )
            parent_name, _, attribute = name.rpartition(".")
            parent = network.get_submodule(parent_name) if parent_name else network
            setattr(parent, attribute, replacement)
            return network
    raise ValueError(
        f"cannot adapt {type(network).__name__} to {channels} input channels: "
        "no Conv2d with 3 input channels found."
    )


class _PaddedInput(torch.nn.Module):
    """Zero-pad (B, C, H, W) images to (B, C, size, size), centred, then run the network."""

    def __init__(self, network, image_hw, size):
        super().__init__()
        self.network = network
        height, width = image_hw
        top = max(0, size - height) // 2
        left = max(0, size - width) // 2
        # torch.nn.functional.pad reads the last dimension first: (left, right, top, bottom).
        self.padding = (left, max(0, size - width - left), top, max(0, size - height - top))

    def forward(self, x):
        return self.network(torch.nn.functional.pad(x, self.padding))


def train(
    entry: ZooEntry,
    dataset,
    *,
    epochs: int = TrainConfig.epochs,
    batch_size: int = TrainConfig.batch_size,
    lr: float = TrainConfig.lr,
    seed: int = TrainConfig.seed,
    threads: int | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    max_steps: int | None = None,
    pretrained: bool = False,
    **options,
) -> TrainResult:
    """Train ``entry`` from random weights on the CPU with a warm-up and cosine schedule.

    Parameters
    ----------
    entry : ZooEntry
        Architecture to build.
    dataset : ImageSet or (inputs, labels)
        ``inputs`` float32 (N, C, H, W) in [0, 1] matching ``entry.input_size``,
        ``labels`` int (N,) in [0, num_classes).
    epochs, batch_size, lr, seed
        See `TrainConfig`.
    threads : int, optional
        Passed to ``torch.set_num_threads`` for the whole process; None keeps torch's setting.
    progress : bool
        Show a tqdm bar per epoch with the running loss and accuracy.
    num_classes : int, optional
        Output size; defaults to ``labels.max() + 1``.
    max_steps : int, optional
        Stop after this many steps in total (for smoke tests); the schedule still spans all
        ``epochs``.
    pretrained : bool
        Start from timm's pretrained weights (downloaded on first use) instead of random ones.
    **options
        Other `TrainConfig` fields: ``weight_decay``, ``optimizer``, ``label_smoothing``,
        ``augment``, ``warmup_fraction``.

    Returns
    -------
    TrainResult
    """
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, **options)
    inputs, labels = _as_arrays(dataset, entry)
    if num_classes is None:
        num_classes = int(labels.max()) + 1
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(
            f"labels must lie in [0, num_classes={num_classes}), got values from "
            f"{labels.min()} to {labels.max()}; pass the dataset's num_classes."
        )
    if threads is not None:
        torch.set_num_threads(threads)
    # Adam's second moments of tiny gradients drift into float32 subnormals late in training.
    # x86 CPUs process those in microcode, which slowed steps 40-fold here, so flush them to zero.
    torch.set_flush_denormal(True)

    torch.manual_seed(config.seed)
    model = create_model(entry, num_classes, inputs.shape[1:], pretrained=pretrained)
    steps_per_epoch = len(inputs) // config.batch_size
    if steps_per_epoch == 0:
        raise ValueError(
            f"batch_size={config.batch_size} exceeds the {len(inputs)} training images; "
            "lower batch_size."
        )
    total_steps = config.epochs * steps_per_epoch
    optimizer = _make_optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _warmup_cosine(total_steps, config.warmup_fraction)
    )
    loss_function = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    generator = torch.Generator().manual_seed(config.seed)
    inputs_tensor = torch.from_numpy(inputs)
    labels_tensor = torch.from_numpy(labels)

    logger.info(
        "training %s (%s %s) on %d images: %d epochs x %d steps, %d threads",
        entry.name, entry.source, entry.arch, len(inputs), config.epochs, steps_per_epoch,
        torch.get_num_threads(),
    )
    history = []
    step = 0
    started = time.perf_counter()
    for epoch in range(config.epochs):
        steps_left = None if max_steps is None else max_steps - step
        record = _train_epoch(
            model, inputs_tensor, labels_tensor, optimizer, scheduler, loss_function, generator,
            config, steps_per_epoch, steps_left,
            description=f"{entry.name} epoch {epoch + 1}/{config.epochs}", progress=progress,
        )
        step += record.pop("steps")
        record = {"epoch": epoch + 1, **record}
        history.append(record)
        logger.info(
            "%s epoch %d/%d: loss %.4f, accuracy %.4f, %.0f s",
            entry.name, epoch + 1, config.epochs, record["train_loss"],
            record["train_accuracy"], record["seconds"],
        )
        if not math.isfinite(record["train_loss"]):
            raise FloatingPointError(
                f"training {entry.name} diverged in epoch {epoch + 1} "
                f"(loss {record['train_loss']}); lower lr={config.lr:g}."
            )
        if max_steps is not None and step >= max_steps:
            break

    model.eval()
    return TrainResult(
        model=model, history=history, wall_time_s=time.perf_counter() - started, steps=step
    )


def _train_epoch(
    model, inputs, labels, optimizer, scheduler, loss_function, generator, config: TrainConfig,
    steps_per_epoch: int, steps_left: int | None, *, description: str, progress: bool,
) -> dict[str, float]:
    """Run one shuffled pass (or ``steps_left`` steps) and return its loss, accuracy and time."""
    model.train()
    started = time.perf_counter()
    order = torch.randperm(len(inputs), generator=generator)
    steps = steps_per_epoch if steps_left is None else min(steps_per_epoch, steps_left)
    loss_sum = 0.0
    correct = 0
    seen = 0
    bar = tqdm(range(steps), desc=description, disable=not progress, leave=True)
    for batch_index in bar:
        index = order[batch_index * config.batch_size:(batch_index + 1) * config.batch_size]
        batch = inputs[index]
        target = labels[index]
        if config.augment:
            batch = _augment(batch, generator)

        logits = model(batch)
        loss = loss_function(logits, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()

        loss_sum += loss.item() * len(target)
        correct += int((logits.argmax(dim=1) == target).sum())
        seen += len(target)
        bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}")
    bar.close()
    return {
        "train_loss": loss_sum / seen,
        "train_accuracy": correct / seen,
        "lr_end": scheduler.get_last_lr()[0],
        "seconds": time.perf_counter() - started,
        "steps": steps,
    }


def _as_arrays(dataset, entry: ZooEntry) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(dataset, "inputs") and hasattr(dataset, "labels"):
        inputs, labels = dataset.inputs, dataset.labels
    else:
        inputs, labels = dataset
    inputs = np.ascontiguousarray(inputs, dtype=np.float32)
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    if inputs.ndim != 4:
        raise ValueError(
            f"zoo model {entry.name!r} trains on images of shape (N, C, H, W), got inputs of "
            f"shape {inputs.shape}."
        )
    if len(inputs) != len(labels):
        raise ValueError(
            f"inputs contain {len(inputs)} images but labels contain {len(labels)} labels; "
            "pass one label per image."
        )
    return inputs, labels


def _make_optimizer(model, config: TrainConfig):
    # Biases and normalisation scales get no weight decay, the usual practice for BatchNorm nets.
    decayed = [p for p in model.parameters() if p.ndim > 1]
    undecayed = [p for p in model.parameters() if p.ndim <= 1]
    groups = [
        {"params": decayed, "weight_decay": config.weight_decay},
        {"params": undecayed, "weight_decay": 0.0},
    ]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    return torch.optim.SGD(groups, lr=config.lr, momentum=0.9, nesterov=True)


def _warmup_cosine(total_steps: int, warmup_fraction: float):
    """Return the learning-rate factor per step: linear rise to 1, then cosine decay to 0."""
    warmup_steps = max(1, round(warmup_fraction * total_steps))
    decay_steps = max(1, total_steps - warmup_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps + 1) / decay_steps)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


_MAX_SHIFT = 2  # pixels


def _augment(batch, generator):
    """Shift each image by up to `_MAX_SHIFT` pixels (zero fill) and flip half of them."""
    size, _, height, width = batch.shape
    padded = torch.nn.functional.pad(batch, (_MAX_SHIFT,) * 4)
    shifts = torch.randint(0, 2 * _MAX_SHIFT + 1, (size, 2), generator=generator).tolist()
    flips = (torch.rand(size, generator=generator) < 0.5).tolist()
    out = torch.empty_like(batch)
    for i, ((dy, dx), flip) in enumerate(zip(shifts, flips)):
        image = padded[i, :, dy:dy + height, dx:dx + width]
        out[i] = image.flip(-1) if flip else image
    return out


def predict_logits(model, inputs: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Run ``model`` in eval mode without gradients.

    Parameters
    ----------
    model : torch.nn.Module
    inputs : ndarray of float32, shape (N, C, H, W)
    batch_size : int

    Returns
    -------
    ndarray of float32, shape (N, num_classes)
    """
    model.eval()
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(inputs), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(inputs[start:start + batch_size]))
            chunks.append(model(batch).numpy())
    return np.concatenate(chunks)


def evaluate(model, inputs: np.ndarray, labels: np.ndarray, batch_size: int = 500) -> float:
    """Return the top-1 accuracy of ``model`` on (inputs, labels)."""
    logits = predict_logits(model, inputs, batch_size)
    return float(np.mean(logits.argmax(axis=1) == labels))
