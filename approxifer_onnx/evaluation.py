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

from .coding import DEFAULT_LOCATOR, DEFAULT_NODE_FAMILY, BerrutCode, locate, required_workers
from .coding.locators import check_num_workers
from .coding.decoders import decode_with, parse_decoder
from .coding.placements import make_code, parse_node_shift
from .model import OnnxModel
from .report import group_bootstrap_interval, wilson_interval
from .session import DECODE_SPACES, softmax

__all__ = [
    "PAPER_GRID",
    "CodedOutputs",
    "GridSetting",
    "ProtocolResult",
    "compute_coded_outputs",
    "draw_available",
    "evaluate_grid",
    "evaluate_protocol",
    "parse_grid",
    "parse_wait",
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
    privacy=None,
) -> CodedOutputs:
    """Group `inputs` at random by K, encode each group and run the model on all coded queries.

    The last group is filled with randomly chosen inputs that are not scored, so each input
    counts once. With a `PrivacyPolicy` as `privacy`, the coded queries (placement "queries")
    or the worker outputs (placement "outputs") are clipped and noised as a session would.
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
    coded = code.encode(inputs[source])  # (G, N, *shape), float64
    encode_seconds = time.perf_counter() - started
    if privacy is not None:
        coded = privacy.prepare_queries(coded)

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
    if privacy is not None:
        outputs = privacy.release_outputs(outputs)
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
    wait : {"first-k", "all-but-s", "deadline"}
        "first-k": the first K results arrive from K workers chosen uniformly at random, so with
        N = K + S exactly S random workers straggle in every group (the paper's worst case).
        "all-but-s": exactly S random workers straggle in every group and the other N - S
        results are all used, as under the session's deadline policy when S workers miss the
        deadline. It equals "first-k" when N = K + S.
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
    if wait in ("first-k", "all-but-s"):
        ranks = scores.argsort(axis=1).argsort(axis=1)
        return ranks < (k if wait == "first-k" else n - code.stragglers)
    if wait != "deadline":
        raise ValueError(
            f"wait={wait!r} is not a wait policy; choose 'first-k', 'all-but-s' or 'deadline'"
        )
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
    """Accuracy of one coded setting on a labelled data set.

    The ``*_low`` and ``*_high`` fields bound the accuracies at level `confidence`: a Wilson
    interval for the centralized accuracy, a bootstrap over groups for the coded accuracy
    (see `approxifer_onnx.report`).
    """

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
    decoder: str = "berrut"
    confidence: float = 0.95
    accuracy_centralized_low: float = math.nan
    accuracy_centralized_high: float = math.nan
    accuracy_coded_low: float = math.nan
    accuracy_coded_high: float = math.nan
    byzantine: int = 0
    locator: str | None = None
    attack: str | None = None
    mean_suspected: float = 0.0

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
    decoder: str = "berrut",
    passes: int = 1,
    rng: int | np.random.Generator | None = None,
    base_outputs: np.ndarray | None = None,
    coded_outputs: list[CodedOutputs] | None = None,
    batch_size: int = 256,
    progress: bool = False,
    confidence: float = 0.95,
    byzantine: int = 0,
    locator: str = DEFAULT_LOCATOR,
    locator_tolerance: float | None = None,
    attack=None,
) -> ProtocolResult:
    """Measure centralized and coded accuracy with simulated stragglers.

    Parameters
    ----------
    model : OnnxModel
    inputs : ndarray, shape (B, *shape)
    labels : ndarray of int, shape (B,)
    k, stragglers, num_workers, nodes
        The code, as in `BerrutCode`; `nodes` may also be "shift:s" or "systematic" (see
        `make_code`).
    wait, straggler_probability
        The straggler model, as in `draw_available`.
    decode : {"logits", "probabilities"}
    decoder : str
        "berrut" or "floater-hormann:D", see `approxifer_onnx.coding.decoders`.
    passes : int
        Passes over the data set, each with a new random grouping and new stragglers.
    rng : int or Generator, optional
    base_outputs : ndarray, shape (B, C), optional
        The model's outputs on `inputs`, when already computed.
    coded_outputs : list of CodedOutputs, optional
        Outputs on coded queries from earlier calls with the same code, reused per pass.
    confidence : float in (0, 1)
        Level of the reported intervals.
    byzantine, locator, locator_tolerance
        Locate and drop up to `byzantine` wrong results per group before decoding, as
        `CodedInferenceSession` does. As there, "first-k" then decodes from N - S results, so
        it draws as "all-but-s" does.
    attack : ByzantinePlan, optional
        Wrong results injected into the worker outputs, drawn per group among the available
        workers.

    Returns
    -------
    ProtocolResult
    """
    rng = np.random.default_rng(rng)
    labels = np.asarray(labels)
    if len(labels) != len(inputs):
        raise ValueError(f"got {len(inputs)} inputs but {len(labels)} labels")
    if decode not in DECODE_SPACES:
        raise ValueError(f"decode={decode!r} is not supported; choose 'logits' or 'probabilities'")
    parse_decoder(decoder)
    if base_outputs is None:
        base_outputs = predict_in_batches(model, inputs, batch_size=batch_size, progress=progress)
    base_predictions = base_outputs.argmax(axis=1)

    code = make_code(k, stragglers, num_workers=num_workers, nodes=nodes)
    correct_per_group = []
    scored_per_group = []
    agree = used = suspected = 0
    encode_seconds = decode_seconds = model_seconds = 0.0
    for index in range(passes):
        if coded_outputs is not None and index < len(coded_outputs):
            coded = coded_outputs[index]
            _check_same_code(coded.code, code)
        else:
            coded = compute_coded_outputs(
                model, inputs, code, rng=rng, batch_size=batch_size, progress=progress
            )
        encode_seconds += coded.encode_seconds
        model_seconds += coded.model_seconds
        groups = len(coded.order)
        policy = "all-but-s" if byzantine and wait == "first-k" else wait
        available = draw_available(
            code, groups, wait=policy, rng=rng, straggler_probability=straggler_probability
        )
        outputs = coded.outputs
        if attack is not None:
            outputs = _inject_attack(code, outputs, available, attack, rng)
        started = time.perf_counter()
        results = softmax(outputs) if decode == "probabilities" else outputs
        if byzantine:
            located = locate(code, results, available, byzantine, locator,
                             tolerance=locator_tolerance)
            available = available & located.trusted
            suspected += int(sum(len(workers) for workers in located.suspected))
        estimates = decode_with(code, results, available, decoder)  # (G, K, C)
        decode_seconds += time.perf_counter() - started

        real = coded.order >= 0
        indices = np.where(real, coded.order, 0)
        predictions = estimates.argmax(axis=-1)
        correct_per_group.append(np.sum((predictions == labels[indices]) & real, axis=1))
        scored_per_group.append(real.sum(axis=1))
        agree += int(np.sum((predictions == base_predictions[indices]) & real))
        used += int(available.sum())

    correct_per_group = np.concatenate(correct_per_group)
    scored_per_group = np.concatenate(scored_per_group)
    scored = int(scored_per_group.sum())
    base_correct = int(np.sum(base_predictions == labels))
    base_low, base_high = wilson_interval(base_correct, len(labels), confidence)
    coded_low, coded_high = group_bootstrap_interval(
        correct_per_group, scored_per_group, confidence=confidence
    )
    return ProtocolResult(
        k=code.k,
        stragglers=code.stragglers,
        num_workers=code.num_workers,
        nodes=code.node_family,
        wait=wait,
        decode=decode,
        straggler_probability=float(straggler_probability),
        num_inputs=len(inputs),
        passes=passes,
        accuracy_centralized=base_correct / len(labels),
        accuracy_coded=int(correct_per_group.sum()) / scored,
        agreement=agree / scored,
        mean_results_used=used / (passes * math.ceil(len(inputs) / code.k)),
        encode_seconds=encode_seconds,
        decode_seconds=decode_seconds,
        model_seconds=model_seconds,
        decoder=decoder,
        confidence=confidence,
        accuracy_centralized_low=base_low,
        accuracy_centralized_high=base_high,
        accuracy_coded_low=coded_low,
        accuracy_coded_high=coded_high,
        byzantine=byzantine,
        locator=locator if byzantine else None,
        attack=None if attack is None else attack.to_text(),
        mean_suspected=suspected / (passes * math.ceil(len(inputs) / code.k)),
    )


def _inject_attack(code, outputs, available, attack, rng) -> np.ndarray:
    """Replace the outputs of the attack's wrong workers, drawn among the available ones."""
    wrong = attack.draw(available, rng)
    matrices = None
    if attack.attack.kind == "argmax-flip":
        # The attacker aims at the decode matrix of each group's available workers.
        matrices = np.zeros((len(outputs), code.k, code.num_workers))
        for group, mask in enumerate(available):
            workers = np.flatnonzero(mask)
            matrices[group][:, workers] = code.decode_matrix(workers)
    flat = outputs.reshape(outputs.shape[0], outputs.shape[1], -1)
    return attack.attack.corrupt(flat, wrong, rng, decode_matrices=matrices).reshape(outputs.shape)


def _check_same_code(used: BerrutCode, expected: BerrutCode) -> None:
    """Raise if coded outputs were computed with a different code than the one that decodes."""
    same = (
        used.k == expected.k
        and used.num_workers == expected.num_workers
        and np.allclose(used.beta, expected.beta)
    )
    if not same:
        raise ValueError(
            f"coded_outputs were computed with {used!r} but the requested code is "
            f"{expected!r}; pass outputs computed with the same k, num_workers and nodes"
        )


@dataclass(frozen=True)
class GridSetting:
    """One code size of an evaluation grid: K queries, S stragglers and N workers.

    `num_workers` None means the minimum N = K + S.
    """

    k: int
    stragglers: int
    num_workers: int | None = None

    def __str__(self) -> str:
        text = f"{self.k}:{self.stragglers}"
        return text if self.num_workers is None else f"{text}:{self.num_workers}"


#: The five (K, S) settings of ApproxIFER's ResNet-18 experiments.
PAPER_GRID = "8:1,10:1,12:1,8:2,8:3"


def parse_grid(text: str) -> list[GridSetting]:
    """Parse a comma-separated grid of "K:S" or "K:S:N" items, e.g. "8:1,10:1,8:1:12".

    Raises
    ------
    ValueError
        If an item is not two or three positive integers (S may be 0) or N < K + S.
    """
    settings = []
    for item in str(text).split(","):
        parts = item.strip().split(":")
        if len(parts) not in (2, 3) or not all(part.strip().isdigit() for part in parts):
            raise ValueError(
                f"grid item {item.strip()!r} is invalid; write K:S or K:S:N with integers, "
                "e.g. '8:1' or '8:1:12'"
            )
        k, stragglers, *rest = (int(part) for part in parts)
        num_workers = rest[0] if rest else None
        if k < 1 or (num_workers is not None and num_workers < k + stragglers):
            raise ValueError(
                f"grid item {item.strip()!r} is invalid; it needs K >= 1 and N >= K + S"
            )
        settings.append(GridSetting(k, stragglers, num_workers))
    return settings


def parse_wait(text: str) -> tuple[str, float]:
    """Parse a wait policy: "first-k", "all-but-s" or "deadline:P" (P: probability of lateness).

    See `draw_available` for what each policy decodes from.

    Returns
    -------
    (wait, straggler_probability) : tuple of str and float
    """
    if text in ("first-k", "all-but-s"):
        return text, 0.0
    if text.startswith("deadline:"):
        try:
            probability = float(text[len("deadline:") :])
        except ValueError:
            probability = math.nan
        if 0.0 <= probability <= 1.0:
            return "deadline", probability
    raise ValueError(
        f"wait policy {text!r} is invalid; use 'first-k', 'all-but-s' or 'deadline:P' with P "
        "in [0, 1] the probability that a worker is late, e.g. 'deadline:0.05'"
    )


def evaluate_grid(
    model: OnnxModel,
    inputs: np.ndarray,
    labels: np.ndarray,
    settings: list[GridSetting],
    *,
    nodes: list[str] = (DEFAULT_NODE_FAMILY,),
    waits: list[str] = ("first-k",),
    decodes: list[str] = ("logits",),
    decoders: list[str] = ("berrut",),
    passes: int = 1,
    rng: int | np.random.Generator | None = None,
    confidence: float = 0.95,
    calibration_inputs: np.ndarray | None = None,
    batch_size: int = 256,
    progress: bool = False,
    privacy=None,
    byzantine: int = 0,
    locator: str = DEFAULT_LOCATOR,
    locator_tolerance: float | None = None,
    attack=None,
) -> list[ProtocolResult]:
    """Run `evaluate_protocol` over a grid of codes, node families, wait policies and decoders.

    The model runs once on the plain inputs and once per (setting, node family, pass) on the
    coded queries. Wait policies, decode spaces and decoders reuse those outputs. Every decode
    space and decoder of one (setting, node family, wait policy) uses the same straggler draws,
    so their accuracies compare pairwise.

    Parameters
    ----------
    model : OnnxModel
    inputs : ndarray, shape (B, *shape)
    labels : ndarray of int, shape (B,)
    settings : list of GridSetting
    nodes : list of str
        Node families, "shift:s" or "systematic" specifications (see `make_code`), or "fit": the shift fitted per setting on
        `calibration_inputs` by `approxifer_onnx.calibration.fit_node_shift`, with the first
        wait policy, decode space and decoder. Its rows have nodes "fitted shift:s".
    waits : list of str
        Wait policies as accepted by `parse_wait`.
    decodes : list of {"logits", "probabilities"}
    decoders : list of str
        "berrut" or "floater-hormann:D".
    passes : int, >= 1
    rng : int or Generator, optional
    confidence : float in (0, 1)
    calibration_inputs : ndarray, shape (M, *shape), optional
        Unlabeled inputs, needed when `nodes` contains "fit".
    privacy : PrivacyPolicy, optional
        Noise on the coded queries or the worker outputs, see `compute_coded_outputs`. The base
        accuracy stays that of the model without noise.
    byzantine, locator, locator_tolerance, attack
        Wrong results and their location, as in `evaluate_protocol`.

    Returns
    -------
    list of ProtocolResult
        One per (setting, nodes, wait, decode, decoder), in that nesting order.
    """
    if passes < 1:
        raise ValueError(f"passes must be at least 1, got passes={passes}")
    policies = [parse_wait(wait) for wait in waits]
    for decoder in decoders:
        parse_decoder(decoder)
    if "fit" in nodes and calibration_inputs is None:
        raise ValueError(
            "nodes='fit' needs calibration_inputs to fit the node shift on; pass unlabeled "
            "inputs of the same shape as `inputs`, for example a few hundred training images"
        )
    for family in nodes:
        if family != "fit":
            parse_node_shift(family)  # rejects an invalid specification before any run
    rng = np.random.default_rng(rng)
    base_outputs = predict_in_batches(
        model, inputs, batch_size=batch_size, progress=progress, description="base model"
    )

    results = []
    combinations = [(setting, family) for setting in settings for family in nodes]
    bar = tqdm(combinations, desc="grid", unit="code", disable=not progress)
    for setting, family in bar:
        bar.set_postfix_str(f"{setting} nodes={family}")
        fitted = family == "fit"
        if fitted:
            family = _fit_nodes(model, calibration_inputs, setting, policies[0], decodes[0],
                                decoders[0], rng, batch_size)
        num_workers = setting.num_workers
        if num_workers is None and byzantine:
            num_workers = required_workers(locator, setting.k, setting.stragglers, byzantine)
        elif byzantine:
            check_num_workers(locator, setting.k, setting.stragglers, byzantine, num_workers)
        code = make_code(setting.k, setting.stragglers, num_workers=num_workers, nodes=family)
        coded_outputs = [
            compute_coded_outputs(model, inputs, code, rng=rng, batch_size=batch_size,
                                  privacy=privacy)
            for _ in range(passes)
        ]
        for wait, probability in policies:
            draw_seed = int(rng.integers(2**63))
            for decode in decodes:
                for decoder in decoders:
                    result = evaluate_protocol(
                        model, inputs, labels, k=code.k, stragglers=code.stragglers,
                        num_workers=code.num_workers, nodes=code.node_family, wait=wait,
                        straggler_probability=probability, decode=decode, decoder=decoder,
                        passes=passes, rng=draw_seed, base_outputs=base_outputs,
                        coded_outputs=coded_outputs, confidence=confidence,
                        byzantine=byzantine, locator=locator,
                        locator_tolerance=locator_tolerance, attack=attack,
                    )
                    if fitted:
                        result.nodes = f"fitted {result.nodes}"
                    logger.info(
                        "%s nodes=%s wait=%s decode=%s decoder=%s: coded accuracy %.4f",
                        setting, result.nodes, wait, decode, decoder, result.accuracy_coded,
                    )
                    results.append(result)
    return results


def _fit_nodes(model, calibration_inputs, setting, policy, decode, decoder, rng, batch_size):
    """Fit the node shift of one grid setting and return its node specification."""
    from .calibration import fit_node_shift

    wait, probability = policy
    fit = fit_node_shift(
        model, calibration_inputs, k=setting.k, stragglers=setting.stragglers,
        num_workers=setting.num_workers, wait=wait, straggler_probability=probability,
        decode=decode, decoder=decoder, rng=rng, batch_size=batch_size,
    )
    logger.info("%s: fitted node shift %g on %d calibration inputs (agreement %.4f)",
                setting, fit.shift, fit.num_inputs, fit.agreement[fit.shift])
    return fit.nodes
