"""The cost of coding itself: encode and decode time against model time, and throughput.

Without stragglers a coded session does N/K times the model work of a plain session, so its
throughput on the same cores is at most K/N of the plain throughput. The coding should cost
little on top of that limit.
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..coding import BerrutCode
from ..model import OnnxModel
from ..session import CodedInferenceSession

__all__ = ["THROUGHPUT_TARGET", "measure_coding_overhead", "measure_throughput"]

logger = logging.getLogger(__name__)

#: Coded throughput should reach this share of the K/N limit.
THROUGHPUT_TARGET = 0.9


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


def _median_seconds(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure_coding_overhead(path: str | Path, name: str, ks: tuple[int, ...], *, stragglers: int = 1,
                            groups: int = 32, repeats: int = 5, rng: np.random.Generator | int = 0) -> list[dict]:
    """Time encoding, decoding and the model on the coded queries, per group of K queries.

    The model runs on all G * N coded queries at once, in one onnxruntime session with every CPU
    this process may use. Encoding and decoding run on all G groups at once, and decoding drops
    one random straggler per group.

    Returns
    -------
    list of dict
        One row per K: ``encode_ms_per_group``, ``decode_ms_per_group``,
        ``model_ms_per_group`` and ``coding_share`` = (encode + decode) / model.
    """
    rng = np.random.default_rng(rng)
    model = OnnxModel(path)
    session = model.new_session(intra_op_threads=_cpus())
    rows = []
    for k in ks:
        code = BerrutCode(k, stragglers)
        n = code.num_workers
        queries = rng.random((groups, k, *model.query_shape))
        coded = code.encode(queries)
        flat = coded.reshape(groups * n, *model.query_shape)
        outputs = model.run(session, flat)[0].reshape(groups, n, -1)
        available = np.ones((groups, n), dtype=bool)
        available[np.arange(groups), rng.integers(n, size=groups)] = False

        encode = _median_seconds(lambda: code.encode(queries), repeats)
        decode = _median_seconds(lambda: code.decode(outputs, available), repeats)
        run = _median_seconds(lambda: model.run(session, flat), repeats)
        rows.append({
            "model": name, "k": k, "num_workers": n, "groups": groups,
            "encode_ms_per_group": 1000 * encode / groups,
            "decode_ms_per_group": 1000 * decode / groups,
            "model_ms_per_group": 1000 * run / groups,
            "coding_share": (encode + decode) / run,
        })
    return rows


def measure_throughput(path: str | Path, name: str, *, k: int = 8, stragglers: int = 1, batch: int = 256,
                       repeats: int = 7, rng: np.random.Generator | int = 0) -> dict:
    """Compare a coded session with a plain onnxruntime session on the same CPUs.

    The plain session uses every CPU this process may use as intra-op threads. The coded session
    uses its default `LocalBackend`, which splits those CPUs among its N workers. Both run
    batches of `batch` queries without injected stragglers. They are timed alternately, and the
    median of `repeats` batches is kept, so that load from other processes hits both.

    Returns
    -------
    dict
        ``plain_qps``, ``coded_qps``, ``ratio`` = coded / plain, ``limit`` = K / N,
        ``target`` = `THROUGHPUT_TARGET` * K / N and ``met``.
    """
    rng = np.random.default_rng(rng)
    batch = k * max(1, batch // k)
    model = OnnxModel(path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = _cpus()
    plain = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    input_name = plain.get_inputs()[0].name
    queries = rng.random((batch, *model.query_shape)).astype(model.input_dtype)

    plain_times, coded_times = [], []
    with CodedInferenceSession(model, k, stragglers) as coded:
        plain.run(None, {input_name: queries})  # warm-up
        coded.run(None, {input_name: queries})
        for _ in range(repeats):
            plain_times.append(_median_seconds(lambda: plain.run(None, {input_name: queries}), 1))
            coded_times.append(_median_seconds(lambda: coded.run(None, {input_name: queries}), 1))
        n = coded.num_workers
    plain_qps = batch / statistics.median(plain_times)
    coded_qps = batch / statistics.median(coded_times)
    limit = k / n
    result = {
        "model": name, "k": k, "stragglers": stragglers, "num_workers": n, "batch": batch,
        "cpus": _cpus(), "plain_qps": plain_qps, "coded_qps": coded_qps, "ratio": coded_qps / plain_qps,
        "limit": limit, "target": THROUGHPUT_TARGET * limit,
    }
    result["met"] = result["ratio"] >= result["target"]
    logger.info("throughput %s: plain %.0f q/s, coded %.0f q/s, ratio %.3f (target %.3f)", name,
                plain_qps, coded_qps, result["ratio"], result["target"])
    return result
