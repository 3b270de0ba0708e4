"""Accuracy of coded inference under simulated stragglers, following the ApproxIFER protocol.

Protocol (Soleymani et al., AAAI 2022, section on experiments): each group draws K distinct test
inputs, encodes them into N coded queries, runs the model on every coded query, picks the
stragglers at random among the N workers, decodes from the rest and scores the argmax of each
estimate against the labels. Here the whole data set is split into random groups of K, so every
input is scored once per pass; the model runs once on all coded queries and every straggler
pattern reuses those outputs.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass

import numpy as np
from tqdm.auto import tqdm

from .coding import DEFAULT_NODE_FAMILY, BerrutCode
from .model import OnnxModel
from .session import softmax

__all__ = [
    "CodedOutputs",
    "ProtocolResult",
    "compute_coded_outputs",
    "draw_available",
    "evaluate_protocol",
    "predict_in_batches",
]

logger = logging.getLogger(__name__)


def predict_in_batches(
    model: OnnxModel,
    inputs: np.ndarray,
    *,
    output_name: str | None = None,
    batch_size: int = 256,
    progress: bool = False,
    description: str = "model",
) -> np.ndarray:
    """Run `model` on (B, *shape) inputs in batches and return the (B, C) float64 output."""
    name = output_name or model.outputs[0].name
    parts = []
    starts = range(0, len(inputs), batch_size)
    for start in tqdm(starts, desc=description, unit="batch", disable=not progress, leave=False):
        parts.append(model.predict(inputs[start : start + batch_size], [name])[0])
    return np.concatenate(parts) if parts else np.zeros((0,))


@dataclass
class CodedOutputs:
    """Model outputs on every coded query of a random grouping of a data set.

    Attributes
    ----------
    code : BerrutCode
    order : ndarray of int, shape (G, K)
        Data-set index of each query in each group; -1 marks padding in the last group.
    outputs : ndarray of float64, shape (G, N, C)
        The model's output on each coded query.
    model_seconds : float
        Wall time of the model runs on the coded queries.
    encode_seconds : float
        Wall time of encoding.
    """

    code: BerrutCode
    order: np.ndarray
    outputs: np.ndarray
    model_seconds: float
    encode_seconds: float


def compute_coded_outputs(
    model: OnnxModel,
    inputs: np.ndarray,
    code: BerrutCode,
    *,
    rng: np.random.Generator,
    output_name: str | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> CodedOutputs:
    """Group `inputs` at random by K, encode each group and run the model on all coded queries.

    The last group is filled with randomly chosen inputs that are not scored, so each input
    counts once.
    """
    count = len(inputs)
    k = code.k
    permutation = rng.permutation(count)
    groups = math.ceil(count / k)
    padding = groups * k - count
    order = np.concatenate([permutation, np.full(padding, -1)]).reshape(groups, k)
    fill = rng.choice(count, size=padding, replace=False) if padding else np.zeros(0, int)
    source = np.where(order >= 0, order, 0)
    source[order < 0] = fill

    started = time.perf_counter()
    coded = code.encode(inputs[source].astype(np.float64))  # (G, N, *shape)
    encode_seconds = time.perf_counter() - started

    flat = coded.reshape((-1,) + coded.shape[2:])
    started = time.perf_counter()
    outputs = predict_in_batches(
        model,
        flat,
        output_name=output_name,
        batch_size=batch_size,
        progress=progress,
        description=f"coded queries K={k} N={code.num_workers}",
    )
    model_seconds = time.perf_counter() - started
    outputs = outputs.reshape((groups, code.num_workers) + outputs.shape[1:])
    return CodedOutputs(code, order, outputs, model_seconds, encode_seconds)


def draw_available(
    code: BerrutCode,
    groups: int,
    *,
    wait: str,
    rng: np.random.Generator,
    straggler_probability: float = 0.0,
) -> np.ndarray:
    """Draw which workers' results each group decodes from.

    Parameters
    ----------
    code : BerrutCode
    groups : int
    wait : {"first-k", "deadline"}
        "first-k": the first K results arrive from K workers chosen uniformly at random, so with
        N = K + S exactly S random workers straggle in every group (the paper's worst case).
        "deadline": each worker is late with probability `straggler_probability`
        independently; every punctual result is used, and if fewer than K are punctual the
        decoder waits for randomly chosen late ones until it has K.
    rng : numpy.random.Generator
    straggler_probability : float in [0, 1]

    Returns
    -------
    ndarray of bool, shape (groups, N)
    """
    n, k = code.num_workers, code.k
    scores = rng.random((groups, n))
    if wait == "first-k":
        ranks = scores.argsort(axis=1).argsort(axis=1)
        return ranks < k
    if wait != "deadline":
        raise ValueError(f"wait={wait!r} is not a wait policy; choose 'first-k' or 'deadline'")
    if not 0.0 <= straggler_probability <= 1.0:
        raise ValueError(
            f"straggler_probability must be in [0, 1], got {straggler_probability}"
        )
    punctual = rng.random((groups, n)) >= straggler_probability
    # Late workers arrive in random order: rank them after every punctual worker.
    ranks = np.where(punctual, -1.0, scores).argsort(axis=1).argsort(axis=1)
    return punctual | (ranks < k)


@dataclass
class ProtocolResult:
    """Accuracy of one coded setting on a labelled data set."""

    k: int
    stragglers: int
    num_workers: int
    nodes: str
    wait: str
    decode: str
    straggler_probability: float
    num_inputs: int
    passes: int
    accuracy_centralized: float
    accuracy_coded: float
    agreement: float
    mean_results_used: float
    encode_seconds: float
    decode_seconds: float
    model_seconds: float

    def to_dict(self) -> dict:
        """Return the result as a plain dict, for JSON and CSV."""
        return asdict(self)


def evaluate_protocol(
    model: OnnxModel,
    inputs: np.ndarray,
    labels: np.ndarray,
    *,
    k: int,
    stragglers: int,
    num_workers: int | None = None,
    nodes: str = DEFAULT_NODE_FAMILY,
    wait: str = "first-k",
    straggler_probability: float = 0.0,
    decode: str = "logits",
    passes: int = 1,
    rng: int | np.random.Generator | None = None,
    base_outputs: np.ndarray | None = None,
    coded_outputs: list[CodedOutputs] | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> ProtocolResult:
    """Measure centralized and coded accuracy with simulated stragglers.

    Parameters
    ----------
    model : OnnxModel
    inputs : ndarray, shape (B, *shape)
    labels : ndarray of int, shape (B,)
    k, stragglers, num_workers, nodes
        The code, as in `BerrutCode`.
    wait, straggler_probability
        The straggler model, as in `draw_available`.
    decode : {"logits", "probabilities"}
    passes : int
        Passes over the data set, each with a new random grouping and new stragglers.
    rng : int or Generator, optional
    base_outputs : ndarray, shape (B, C), optional
        The model's outputs on `inputs`, when already computed.
    coded_outputs : list of CodedOutputs, optional
        Outputs on coded queries from earlier calls with the same code, reused per pass.

    Returns
    -------
    ProtocolResult
    """
    rng = np.random.default_rng(rng)
    labels = np.asarray(labels)
    if len(labels) != len(inputs):
        raise ValueError(f"got {len(inputs)} inputs but {len(labels)} labels")
    if base_outputs is None:
        base_outputs = predict_in_batches(model, inputs, batch_size=batch_size, progress=progress)
    base_predictions = base_outputs.argmax(axis=1)

    code = BerrutCode(k, stragglers, num_workers=num_workers, nodes=nodes)
    correct = agree = scored = used = 0
    encode_seconds = decode_seconds = model_seconds = 0.0
    for index in range(passes):
        if coded_outputs is not None and index < len(coded_outputs):
            coded = coded_outputs[index]
        else:
            coded = compute_coded_outputs(
                model, inputs, code, rng=rng, batch_size=batch_size, progress=progress
            )
        encode_seconds += coded.encode_seconds
        model_seconds += coded.model_seconds
        groups = len(coded.order)
        available = draw_available(
            code, groups, wait=wait, rng=rng, straggler_probability=straggler_probability
        )
        started = time.perf_counter()
        results = softmax(coded.outputs) if decode == "probabilities" else coded.outputs
        estimates = code.decode(results, available)  # (G, K, C)
        decode_seconds += time.perf_counter() - started

        real = coded.order >= 0
        predictions = estimates.argmax(axis=-1)[real]
        indices = coded.order[real]
        correct += int(np.sum(predictions == labels[indices]))
        agree += int(np.sum(predictions == base_predictions[indices]))
        scored += len(indices)
        used += int(available.sum())

    return ProtocolResult(
        k=code.k,
        stragglers=code.stragglers,
        num_workers=code.num_workers,
        nodes=nodes,
        wait=wait,
        decode=decode,
        straggler_probability=float(straggler_probability),
        num_inputs=len(inputs),
        passes=passes,
        accuracy_centralized=float(np.mean(base_predictions == labels)),
        accuracy_coded=correct / scored,
        agreement=agree / scored,
        mean_results_used=used / (passes * math.ceil(len(inputs) / code.k)),
        encode_seconds=encode_seconds,
        decode_seconds=decode_seconds,
        model_seconds=model_seconds,
    )
