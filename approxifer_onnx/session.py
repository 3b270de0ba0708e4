"""CodedInferenceSession: an onnxruntime-like session that runs a model through coded workers."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .coding import (
    DEFAULT_LOCATOR,
    DEFAULT_NODE_FAMILY,
    LOCATORS,
    BerrutCode,
    calibrate_tolerance,
    locate,
)
from .coding.locators import check_num_workers, required_workers
from .model import OnnxModel, TensorInfo
from .privacy import LaplaceMechanism, PrivacyPolicy

__all__ = ["WAIT_POLICIES", "CodedInferenceSession", "GroupReport", "RunReport", "softmax"]

logger = logging.getLogger(__name__)

#: How long a call waits for worker results.
WAIT_POLICIES = {
    # Decode from the first K results, as in the ApproxIFER paper.
    "first-k": "decode from the first K results",
    # Collect until all N arrived or the deadline passed, then decode from everything that
    # arrived (at least K). Decoding from more results is more accurate.
    "deadline": "decode from all results that arrive before the deadline (at least K)",
}

#: Spaces the decoder can interpolate in: raw model outputs or their softmax.
DECODE_SPACES = ("logits", "probabilities")


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Return the softmax of `logits` along `axis`, computed stably in float64."""
    shifted = np.asarray(logits, dtype=np.float64)
    shifted = shifted - shifted.max(axis=axis, keepdims=True)
    exponentials = np.exp(shifted)
    return exponentials / exponentials.sum(axis=axis, keepdims=True)


@dataclass(frozen=True)
class GroupReport:
    """What happened to one group of K queries in a call.

    Attributes
    ----------
    answered : tuple of int
        Workers whose results were decoded (the set F).
    late : tuple of int
        Workers still running when the call stopped waiting.
    failed : dict of int to str
        Workers that raised, returned non-finite values or were cancelled, with the reason.
    exact : tuple of bool
        For each real (not padding) query of the group, whether its estimate is exact because a
        worker that answered received exactly that query.
    suspected : tuple of int
        Workers whose results an error locator dropped as wrong.
    """

    answered: tuple[int, ...]
    late: tuple[int, ...]
    failed: Mapping[int, str]
    exact: tuple[bool, ...]
    suspected: tuple[int, ...] = ()

    @property
    def approximate(self) -> bool:
        """Whether any query of the group was decoded approximately."""
        return not all(self.exact)


@dataclass(frozen=True)
class RunReport:
    """Metadata of one `CodedInferenceSession.run` call.

    Attributes
    ----------
    groups : tuple of GroupReport
    num_inputs : int
        Queries in the call, without padding.
    wall_time : float
        Seconds from the call's start to its decoded outputs.
    worker_times : dict of int to float
        Seconds each worker that returned a result took.
    """

    groups: tuple[GroupReport, ...]
    num_inputs: int
    wall_time: float
    worker_times: Mapping[int, float] = field(default_factory=dict)

    @property
    def stragglers(self) -> tuple[int, ...]:
        """Workers that were late or failed in this call."""
        first = self.groups[0] if self.groups else None
        if first is None:
            return ()
        return tuple(sorted(set(first.late) | set(first.failed)))


class CodedInferenceSession:
    """Run an ONNX classifier through N coded workers, tolerating S stragglers.

    Queries are grouped by K; each group is encoded into N coded queries with Berrut's rational
    interpolant, every worker runs the unmodified model on its coded query, and the outputs of
    the queries are decoded from whichever results arrive first.

    Parameters
    ----------
    model : str, Path or OnnxModel
        The classifier. It must have one floating-point input whose first dimension is the batch.
    k : int, >= 1
        Queries per group.
    stragglers : int, >= 0
        Stragglers S tolerated; N defaults to K + S.
    num_workers : int, optional
        Workers N, at least K + S. More workers make decoding more accurate.
    nodes : str
        Worker node family (see `approxifer_onnx.coding.NODE_FAMILIES`).
    wait : {"first-k", "deadline"}
        "first-k" decodes from the first K results, or with `byzantine` > 0 from the first
        N - S, as ApproxIFER's Byzantine decoder does: every result beyond the locator's
        minimum helps it. "deadline" waits for all N results or the deadline, whichever comes
        first, then decodes from all that arrived.
    timeout : float, > 0
        Seconds to wait for the results decoding needs (K, or N - S with `byzantine`) before
        raising `NotEnoughResultsError`.
    deadline : float, > 0, optional
        With wait="deadline": seconds after the call's start at which to stop waiting for more
        than K results. Defaults to `timeout`.
    decode : {"logits", "probabilities"}
        Interpolate the model's raw outputs, or their softmax.
    providers : list, optional
        onnxruntime execution providers for every worker, as in `onnxruntime.InferenceSession`.
    strict_providers : bool
        Raise `ProviderError` instead of warning when a requested provider is not active.
    byzantine : int, >= 0
        Wrong results E to locate and drop in every group before decoding.
    locator : str
        Error locator for `byzantine` > 0, a name in `approxifer_onnx.coding.LOCATORS`. It sets
        how many results decoding waits for and the default N: max(K + E, 2E + 1) + S for
        "median", K + 2E + S for "subset-search" and "reed-solomon", 2K + 2E + S - 1 for "welch"
        (the ApproxIFER paper's). The default, "median", is the one that found E = 1 to 3 wrong
        workers in 99% of trials on real classifiers with fewer workers than the paper's
        (`approxifer_onnx.coding.DEFAULT_LOCATOR`); it misses wrong results that look honest.
    locator_tolerance : float, optional
        Statistic below which a set of results counts as honest (see `locate`). Real models need
        a value above their own honest spread: `calibrate_locator` measures one on held-out
        inputs.
    privacy : LaplaceMechanism, optional
        Adds differential-privacy noise at `privacy_placement`; see `approxifer_onnx.privacy`.
    privacy_placement : {"outputs", "queries"}
        "outputs" clips and noises each worker's outputs; "queries" clips and noises each coded
        query before it leaves the client.
    privacy_budget : float, optional
        Total epsilon after which `run` raises instead of releasing more.
    faults : FaultPlan, optional
        Injected delays, failures and hangs, for tests and evaluation.
    attack : ByzantinePlan or str, optional
        Injected wrong results (see `approxifer_onnx.attacks`), for tests and evaluation; a str
        is parsed by `ByzantinePlan.parse`, e.g. "gaussian:10@random:1".
    backend : Backend or callable, optional
        Worker backend, or a factory called as ``backend(model, num_workers, faults=faults,
        rng=rng)`` (a backend class such as `RayBackend`, or a `functools.partial` of one).
        Defaults to `LocalBackend`, one onnxruntime session per worker thread.
    rng : int or numpy.random.Generator, optional
        Seeds the fault injection.

    Examples
    --------
    >>> sess = CodedInferenceSession("model.onnx", k=8, stragglers=1)  # doctest: +SKIP
    >>> logits = sess.run(None, {sess.get_inputs()[0].name: images})[0]  # doctest: +SKIP
    >>> sess.last_run.groups[0].answered  # doctest: +SKIP
    """

    def __init__(
        self,
        model: str | Path | OnnxModel,
        k: int = 8,
        stragglers: int = 1,
        *,
        num_workers: int | None = None,
        nodes: str = DEFAULT_NODE_FAMILY,
        wait: str = "first-k",
        timeout: float = 10.0,
        deadline: float | None = None,
        decode: str = "logits",
        byzantine: int = 0,
        locator: str = DEFAULT_LOCATOR,
        locator_tolerance: float | None = None,
        privacy: LaplaceMechanism | None = None,
        privacy_placement: str = "outputs",
        privacy_budget: float | None = None,
        providers: Sequence[Any] | None = None,
        strict_providers: bool = False,
        faults: Any = None,
        attack: Any = None,
        backend: Any = None,
        rng: int | np.random.Generator | None = None,
    ):
        if wait not in WAIT_POLICIES:
            raise ValueError(f"wait={wait!r} is not a wait policy; choose 'first-k' or 'deadline'")
        if decode not in DECODE_SPACES:
            raise ValueError(
                f"decode={decode!r} is not supported; choose 'logits' or 'probabilities'"
            )
        if deadline is not None and wait != "deadline":
            raise ValueError(
                f"deadline={deadline} applies only to wait='deadline', got wait={wait!r}; "
                "drop the deadline or use wait='deadline'"
            )
        self.timeout = _check_seconds("timeout", timeout)
        self.deadline = self.timeout if deadline is None else _check_seconds("deadline", deadline)
        self.wait = wait
        self.decode_space = decode

        if locator not in LOCATORS:
            raise ValueError(
                f"locator={locator!r} is unknown; choose one of {', '.join(map(repr, LOCATORS))}"
            )
        self.byzantine = int(byzantine)
        self.locator = locator
        self.locator_tolerance = _check_tolerance(locator_tolerance)
        if num_workers is None:
            num_workers = required_workers(locator, k, stragglers, byzantine)
        elif byzantine:
            check_num_workers(locator, k, stragglers, byzantine, num_workers)
        self.code = BerrutCode(k, stragglers, num_workers=num_workers, nodes=nodes)
        # check_num_workers made N - S at least the locator's required_results.
        self.results_needed = self.code.min_results if byzantine else k
        self.privacy = (
            None if privacy is None else PrivacyPolicy(privacy, privacy_placement, privacy_budget)
        )
        self.attack = _check_attack(attack)
        self._attack_rng = np.random.default_rng(rng)
        if isinstance(model, OnnxModel):
            self.model = model
        else:
            self.model = OnnxModel(model, providers=providers, strict_providers=strict_providers)
        self._outputs = [info for info in self.model.outputs if _is_float(info)]
        if not self._outputs:
            raise ValueError(
                f"model {self.model.path} has no floating-point output to decode; outputs: "
                + ", ".join(f"{info.name} ({info.type})" for info in self.model.outputs)
            )

        if backend is None:
            from .backends.local import LocalBackend

            backend = LocalBackend
        if isinstance(backend, type) or not hasattr(backend, "gather"):
            # A backend class or factory: it gets the checked model and the final worker count.
            backend = backend(self.model, self.code.num_workers, faults=faults, rng=rng)
        self.backend = backend
        self.last_run: RunReport | None = None
        logger.info(
            "coded session ready: model=%s k=%d stragglers=%d byzantine=%d num_workers=%d "
            "nodes=%s wait=%s providers=%s privacy=%s",
            self.model.path,
            self.code.k,
            self.code.stragglers,
            self.byzantine,
            self.code.num_workers,
            self.code.node_family,
            self.wait,
            self.model.active_providers,
            self.privacy,
        )

    # -- onnxruntime-like surface ------------------------------------------------------------

    @property
    def k(self) -> int:
        """Queries per group."""
        return self.code.k

    @property
    def num_workers(self) -> int:
        """Workers per group, N."""
        return self.code.num_workers

    def get_inputs(self) -> list[TensorInfo]:
        """Return the model's input description, as `onnxruntime.InferenceSession` does."""
        return [self.model.input]

    def get_outputs(self) -> list[TensorInfo]:
        """Return the model's floating-point outputs, the ones that can be decoded."""
        return list(self._outputs)

    @property
    def privacy_spent(self) -> float:
        """Total epsilon charged by the privacy accountant so far; 0 without privacy."""
        return 0.0 if self.privacy is None else self.privacy.accountant.spent

    def get_providers(self) -> list[str]:
        """Return the execution providers that are actually active."""
        return list(self.model.active_providers)

    def run(
        self,
        output_names: Sequence[str] | None,
        input_feed: Mapping[str, np.ndarray],
        run_options: Any = None,
    ) -> list[np.ndarray]:
        """Run the model on a batch of queries through coded workers.

        Parameters
        ----------
        output_names : list of str or None
            Outputs to return; None returns every floating-point output.
        input_feed : dict
            {input name: array of shape (B, *query_shape)}; any B >= 0.
        run_options : onnxruntime.RunOptions, optional
            Accepted for compatibility with onnxruntime and ignored.

        Returns
        -------
        list of ndarray of float64, each of shape (B, *output_shape)
            Decoded outputs in input order.

        Raises
        ------
        NotEnoughResultsError
            If fewer than K workers returned a result within `timeout`.
        """
        del run_options
        names = self._check_output_names(output_names)
        queries = self._check_feed(input_feed)
        started = time.monotonic()
        count = len(queries)
        if count == 0:
            self.last_run = RunReport(groups=(), num_inputs=0, wall_time=0.0)
            return [np.zeros((0, *self._declared_query_shape(name))) for name in names]

        groups = _group(queries, self.k)
        coded = self.code.encode(groups)
        if self.privacy is not None:
            coded = self.privacy.prepare_queries(coded, num_outputs=len(names))
        gathered = self.backend.gather(
            coded,
            names,
            needed=self.results_needed,
            timeout=self.timeout,
            collect_for=self.deadline if self.wait == "deadline" else None,
        )
        worker_outputs = gathered.outputs
        if self.privacy is not None:
            worker_outputs = self.privacy.release_outputs(worker_outputs)

        arrived = np.zeros(self.num_workers, dtype=bool)
        arrived[list(worker_outputs)] = True
        stacked = [
            self._stack(worker_outputs, position, len(groups)) for position in range(len(names))
        ]
        if self.attack is not None:
            stacked = self._inject_attack(stacked, arrived)
        # Locate wrong results on the first output and drop them from every output's decoding.
        available = np.broadcast_to(arrived, (len(groups), self.num_workers))
        suspected = [()] * len(groups)
        if self.byzantine:
            located = locate(
                self.code,
                stacked[0],
                arrived,
                self.byzantine,
                self.locator,
                tolerance=self.locator_tolerance,
            )
            available = arrived & located.trusted
            suspected = located.suspected
        decoded = []
        for results in stacked:
            estimates = self.code.decode(results, available)
            decoded.append(estimates.reshape((-1,) + estimates.shape[2:])[:count])

        self.last_run = self._report(
            gathered, available, suspected, count, time.monotonic() - started
        )
        return decoded

    def predict_uncoded(self, inputs: np.ndarray, output_name: str | None = None) -> np.ndarray:
        """Run the model directly on `inputs`, without coding, as a reference.

        Returns
        -------
        ndarray of float64, shape (B, *output_shape)
        """
        name = output_name or self._outputs[0].name
        self._check_output_names([name])
        queries = self._check_feed({self.model.input.name: inputs})
        output = self.model.predict(queries, [name])[0]
        if self.decode_space == "probabilities":
            output = softmax(output)
        return output

    def calibrate_locator(
        self, inputs: np.ndarray, *, quantile: float = 0.99, rng: int | None = None
    ) -> float:
        """Set `locator_tolerance` from the clean coded outputs of `inputs` and return it.

        The model runs in this process on the coded queries of `inputs`, with no injected
        fault, wrong result or privacy noise, and `approxifer_onnx.coding.calibrate_tolerance`
        takes the `quantile` of the locator's statistic. Use inputs held out from those to be
        served, like them in distribution.

        Parameters
        ----------
        inputs : ndarray, shape (B, *query_shape), B >= K
            Held-out queries; only the first K * floor(B / K) form groups.
        quantile : float in (0, 1]
            About 1 - quantile of clean groups will lose an honest worker.
        rng : int, optional
            Seed of the random results removed while measuring.

        Raises
        ------
        ValueError
            If the session locates nothing (byzantine=0) or fewer than K inputs are given.
        """
        if not self.byzantine:
            raise ValueError(
                "calibrate_locator needs a session with byzantine > 0; there is no locator "
                "to calibrate with byzantine=0"
            )
        queries = self._check_feed({self.model.input.name: inputs})
        full = (len(queries) // self.k) * self.k
        if full == 0:
            raise ValueError(
                f"calibrate_locator needs at least K={self.k} inputs, got {len(queries)}; "
                "pass more held-out inputs"
            )
        # evaluation imports this module, so its batch runner is imported here.
        from .evaluation import predict_in_batches

        coded = self.code.encode(_group(queries[:full], self.k))  # (G, N, *shape)
        flat = coded.reshape((-1,) + coded.shape[2:])
        outputs = predict_in_batches(self.model, flat, output_name=self._outputs[0].name)
        outputs = outputs.reshape(coded.shape[:2] + outputs.shape[1:])
        if self.decode_space == "probabilities":
            outputs = softmax(outputs)
        self.locator_tolerance = calibrate_tolerance(
            self.code, outputs, self.locator, byzantine=self.byzantine, quantile=quantile, rng=rng
        )
        return self.locator_tolerance

    def close(self) -> None:
        """Stop the workers and release their sessions."""
        self.backend.close()

    def __enter__(self) -> "CodedInferenceSession":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"CodedInferenceSession({str(self.model.path)!r}, k={self.k}, "
            f"stragglers={self.code.stragglers}, num_workers={self.num_workers}, "
            f"wait={self.wait!r})"
        )

    # -- helpers -----------------------------------------------------------------------------

    def _check_output_names(self, output_names: Sequence[str] | None) -> list[str]:
        decodable = [info.name for info in self._outputs]
        if output_names is None:
            return decodable
        if isinstance(output_names, str):
            raise TypeError(
                f"output_names must be a list of names or None, got the string {output_names!r}; "
                f"pass [{output_names!r}]"
            )
        names = list(output_names)
        for name in names:
            if name not in decodable:
                known = ", ".join(repr(n) for n in decodable)
                raise ValueError(
                    f"output {name!r} is not a floating-point output of the model, so it cannot "
                    f"be decoded; choose from {known}"
                )
        return names

    def _check_feed(self, input_feed: Mapping[str, np.ndarray]) -> np.ndarray:
        expected = self.model.input.name
        if not isinstance(input_feed, Mapping):
            raise TypeError(
                f"input_feed must be a dict {{{expected!r}: array}}, got {type(input_feed).__name__}"
            )
        if set(input_feed) != {expected}:
            raise ValueError(
                f"input_feed must have exactly the key {expected!r}, got {sorted(input_feed)}"
            )
        queries = np.asarray(input_feed[expected])
        if not (np.issubdtype(queries.dtype, np.floating) or np.issubdtype(queries.dtype, np.integer)):
            raise TypeError(
                f"input {expected!r} must be a real-valued array, got dtype {queries.dtype}"
            )
        query_shape = tuple(self.model.query_shape)
        if queries.ndim != len(query_shape) + 1 or queries.shape[1:] != query_shape:
            raise ValueError(
                f"input {expected!r} must have shape (batch, {', '.join(map(str, query_shape))}), "
                f"got {queries.shape}"
            )
        if not np.all(np.isfinite(queries)):
            raise ValueError(f"input {expected!r} contains NaN or infinite values")
        return queries.astype(np.float64, copy=False)

    def _declared_query_shape(self, name: str) -> tuple[int, ...]:
        # Per-query shape of an output as declared in the graph; symbolic sizes count as 0.
        info = next(info for info in self._outputs if info.name == name)
        return tuple(size if isinstance(size, int) else 0 for size in info.shape[1:])

    def _stack(self, worker_outputs, position: int, groups: int) -> np.ndarray:
        # (G, N, C) results of one output; rows of absent workers stay zero and are not decoded.
        shape = next(iter(worker_outputs.values()))[position].shape[1:]
        results = np.zeros((groups, self.num_workers) + shape)
        for worker, outputs in worker_outputs.items():
            results[:, worker] = outputs[position]
        if self.decode_space == "probabilities":
            results = softmax(results)
        return results

    def _inject_attack(self, stacked: list[np.ndarray], arrived: np.ndarray) -> list[np.ndarray]:
        groups = len(stacked[0])
        wrong = self.attack.draw(np.broadcast_to(arrived, (groups, self.num_workers)), self._attack_rng)
        matrices = None
        if self.attack.attack.kind == "argmax-flip":
            workers = np.flatnonzero(arrived)
            matrix = np.zeros((self.k, self.num_workers))
            matrix[:, workers] = self.code.decode_matrix(workers)
            matrices = np.broadcast_to(matrix, (groups, self.k, self.num_workers))
        attacked = []
        for results in stacked:
            flat = results.reshape(groups, self.num_workers, -1)
            corrupted = self.attack.attack.corrupt(flat, wrong, self._attack_rng, decode_matrices=matrices)
            attacked.append(corrupted.reshape(results.shape))
        return attacked

    def _report(self, gathered, available, suspected, count, wall_time) -> RunReport:
        exact = self.code.exact_queries(available)  # (G, K)
        failed = dict(gathered.failed)
        late = tuple(sorted(gathered.late))
        groups = []
        for index in range(math.ceil(count / self.k)):
            real = min(self.k, count - index * self.k)
            groups.append(
                GroupReport(
                    answered=tuple(int(i) for i in np.flatnonzero(available[index])),
                    late=late,
                    failed=failed,
                    exact=tuple(bool(flag) for flag in exact[index, :real]),
                    suspected=tuple(int(i) for i in suspected[index]),
                )
            )
        dropped = {index: list(workers) for index, workers in enumerate(suspected) if workers}
        if dropped:
            logger.info("dropped suspected wrong results, workers per group: %s", dropped)
        if late or failed:
            logger.info("call finished with late workers %s and failed workers %s", late, failed)
        return RunReport(
            groups=tuple(groups),
            num_inputs=count,
            wall_time=wall_time,
            worker_times=dict(gathered.elapsed),
        )


def _check_seconds(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive, finite number of seconds, got {name}={value}")
    return float(value)


def _is_float(info: TensorInfo) -> bool:
    return np.issubdtype(info.dtype, np.floating)


def _check_tolerance(tolerance):
    if tolerance is None:
        return None
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float, np.floating)):
        raise TypeError(
            f"locator_tolerance must be a number, got {type(tolerance).__name__} {tolerance!r}"
        )
    if not tolerance >= 0:
        raise ValueError(
            f"locator_tolerance must be >= 0, got {tolerance!r}; calibrate_locator measures one"
        )
    return float(tolerance)


def _check_attack(attack):
    from .attacks import ByzantinePlan

    if attack is None or isinstance(attack, ByzantinePlan):
        return attack
    if isinstance(attack, str):
        return ByzantinePlan.parse(attack)
    raise TypeError(
        f"attack must be a ByzantinePlan or its text form such as 'gaussian:10@random:1', got "
        f"{type(attack).__name__}"
    )


def _group(queries: np.ndarray, k: int) -> np.ndarray:
    """Split (B, *shape) queries into (G, K, *shape) groups, padding by repeating the last query."""
    count = len(queries)
    groups = math.ceil(count / k)
    padding = groups * k - count
    if padding:
        queries = np.concatenate([queries, np.repeat(queries[-1:], padding, axis=0)])
    return queries.reshape((groups, k) + queries.shape[1:])
