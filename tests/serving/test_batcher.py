"""RequestBatcher on a real coded session: grouping, delays, limits, timeouts and shutdown."""

import asyncio
import time

import numpy as np
import pytest

from approxifer_onnx.faults import FaultPlan
from approxifer_onnx.serving.batcher import (
    QueueFullError,
    RequestBatcher,
    RequestTimeoutError,
    ShuttingDownError,
    WorkerPoolError,
)
from approxifer_onnx.session import CodedInferenceSession

from .conftest import EXACT_CODE, make_queries

LONG_DELAY = 30.0  # a queue delay that no test waits for


def run_with_batcher(session, scenario, **options):
    """Start a batcher on `session`, run `scenario(batcher)` in a new event loop, then close it."""
    settings = {"max_queue_delay": 0.01, "max_queue_size": 64, "max_batch_size": 16, **options}

    async def main():
        batcher = RequestBatcher(session, **settings)
        await batcher.start()
        try:
            return await scenario(batcher)
        finally:
            await batcher.close(timeout=5.0)

    return asyncio.run(main())


def test_concurrent_requests_form_full_groups(exact_session):
    queries = make_queries(8)

    async def scenario(batcher):
        started = time.monotonic()
        outcomes = await asyncio.gather(*(batcher.submit(queries[i : i + 1], timeout=10.0) for i in range(8)))
        return outcomes, time.monotonic() - started

    outcomes, seconds = run_with_batcher(exact_session, scenario, max_queue_delay=LONG_DELAY)
    # Eight inputs make two full groups of K=4, sent at once without waiting for the delay.
    assert seconds < LONG_DELAY / 3
    assert {tuple(outcome.batch_ids) for outcome in outcomes} == {(1,)}
    assert sorted(offset for outcome in outcomes for offset in outcome.batch_offsets) == list(range(8))
    expected = exact_session.predict_uncoded(queries)
    for index, outcome in enumerate(outcomes):
        np.testing.assert_allclose(outcome.outputs[0][0], expected[index], rtol=1e-5, atol=1e-6)
        assert outcome.exact.tolist() == [True]
        assert outcome.answered == set(range(8))


def test_partial_group_sent_after_delay(exact_session):
    queries = make_queries(3, seed=1)

    async def scenario(batcher):
        return await batcher.submit(queries, timeout=10.0)

    outcome = run_with_batcher(exact_session, scenario, max_queue_delay=0.05)
    np.testing.assert_allclose(outcome.outputs[0], exact_session.predict_uncoded(queries), rtol=1e-5, atol=1e-6)
    assert outcome.batch_ids == [1]


def test_request_split_across_calls(exact_session):
    queries = make_queries(6, seed=2)

    async def scenario(batcher):
        return await batcher.submit(queries, timeout=10.0)

    outcome = run_with_batcher(exact_session, scenario, max_batch_size=4)
    # The first call carries one full group; the two rows left wait for the delay.
    assert outcome.batch_ids == [1, 2]
    assert outcome.batch_offsets == [0, 0]
    np.testing.assert_allclose(outcome.outputs[0], exact_session.predict_uncoded(queries), rtol=1e-5, atol=1e-6)


def test_full_queue_rejects_request(exact_session):
    async def scenario(batcher):
        waiting = asyncio.ensure_future(batcher.submit(make_queries(3), timeout=10.0))
        await asyncio.sleep(0)
        assert batcher.queue_depth == 3
        with pytest.raises(QueueFullError, match=r"3 inputs are waiting and the limit is 4; retry later"):
            await batcher.submit(make_queries(2), timeout=10.0)
        await batcher.close(timeout=5.0)  # sends the queued inputs without waiting for the delay
        return await waiting

    outcome = run_with_batcher(exact_session, scenario, max_queue_delay=LONG_DELAY, max_queue_size=4)
    assert len(outcome.outputs[0]) == 3


def test_timed_out_request_leaves_queue(exact_session):
    async def scenario(batcher):
        with pytest.raises(RequestTimeoutError, match=r"timed out after 0.05 s without a response"):
            await batcher.submit(make_queries(1), timeout=0.05)
        return batcher.queue_depth

    assert run_with_batcher(exact_session, scenario, max_queue_delay=LONG_DELAY) == 0


def test_close_answers_queued_requests(exact_session):
    queries = make_queries(2, seed=3)

    async def scenario():
        batcher = RequestBatcher(exact_session, max_queue_delay=LONG_DELAY, max_queue_size=8, max_batch_size=8)
        await batcher.start()
        waiting = asyncio.ensure_future(batcher.submit(queries, timeout=60.0))
        await asyncio.sleep(0)
        started = time.monotonic()
        await batcher.close(timeout=10.0)
        outcome = await waiting
        with pytest.raises(ShuttingDownError, match=r"shutting down and accepts no new requests"):
            await batcher.submit(queries, timeout=1.0)
        return outcome, time.monotonic() - started

    outcome, seconds = asyncio.run(scenario())
    assert seconds < LONG_DELAY / 3
    np.testing.assert_allclose(outcome.outputs[0], exact_session.predict_uncoded(queries), rtol=1e-5, atol=1e-6)


def test_close_fails_requests_left_after_timeout(model_path):
    # Every worker hangs, so the call cannot finish before close() gives up on it.
    hanging = FaultPlan(hang=tuple(range(8)))
    with CodedInferenceSession(model_path, **EXACT_CODE, timeout=20.0, faults=hanging) as session:

        async def scenario():
            batcher = RequestBatcher(session, max_queue_delay=0.0, max_queue_size=8, max_batch_size=8)
            await batcher.start()
            waiting = asyncio.ensure_future(batcher.submit(make_queries(1), timeout=60.0))
            await asyncio.sleep(0.1)
            await batcher.close(timeout=0.2)
            with pytest.raises(ShuttingDownError, match=r"shut down before responding to the request"):
                await waiting

        asyncio.run(scenario())


def test_failed_call_fails_its_requests(model_path):
    failing = FaultPlan(fail=tuple(range(8)))
    with CodedInferenceSession(model_path, **EXACT_CODE, faults=failing) as session:

        async def scenario(batcher):
            with pytest.raises(WorkerPoolError, match=r"coded call failed: received 0 of 8 worker results"):
                await batcher.submit(make_queries(1), timeout=10.0)
            # The batcher survives the failure and still accepts requests.
            return batcher.running

        assert run_with_batcher(session, scenario)


def test_batch_size_must_be_multiple_of_k(exact_session):
    with pytest.raises(ValueError, match=r"max_batch_size=6 must be a positive multiple of K=4"):
        RequestBatcher(exact_session, max_queue_delay=0.0, max_queue_size=8, max_batch_size=6)
