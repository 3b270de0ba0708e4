"""RayBackend on a local Ray bound to 127.0.0.1: same results as LocalBackend, dead actors, HTTP."""

import httpx
import numpy as np
import pytest

from approxifer_onnx.faults import FaultPlan
from approxifer_onnx.model import OnnxModel
from approxifer_onnx.serving import ServeConfig, ServerThread
from approxifer_onnx.session import CodedInferenceSession

from .conftest import EXACT_CODE, make_queries

pytestmark = pytest.mark.ray

# K = 4, S = 2, N = 6 with two faulty workers per call (worker 5 fails, one random worker hangs):
# exactly the K healthy workers answer, so the decoded outputs depend only on the fault draw.
CODE = {"k": 4, "stragglers": 2, "num_workers": 6, "wait": "first-k", "timeout": 20.0}
PLAN = "fail=5;count=1;delay=hang"
SEED = 11


@pytest.fixture(scope="module")
def ray_backend_module():
    try:
        from approxifer_onnx.backends import ray as ray_backend
        ray = ray_backend.import_ray()
    except ImportError as error:
        pytest.skip(f"ray is not installed: {error}")
    ray_backend.start_local_ray(num_cpus=2)
    yield ray_backend
    ray.shutdown()


@pytest.fixture(scope="module")
def onnx_model(model_path):
    return OnnxModel(model_path)


def run_calls(session, batches):
    outputs, answered = [], []
    for queries in batches:
        outputs.append(session.run(None, {"x": queries})[0])
        answered.append(session.last_run.groups[0].answered)
    return outputs, answered


def test_ray_matches_local_on_same_seed(ray_backend_module, onnx_model):
    batches = [make_queries(8, seed=seed) for seed in range(4)]
    plan = FaultPlan.parse(PLAN)
    backend = ray_backend_module.RayBackend(onnx_model, 6, faults=plan, rng=SEED)
    with CodedInferenceSession(onnx_model, **CODE, backend=backend) as on_ray:
        ray_outputs, ray_answered = run_calls(on_ray, batches)
    with CodedInferenceSession(onnx_model, **CODE, faults=plan, rng=SEED) as local:
        local_outputs, local_answered = run_calls(local, batches)

    assert ray_answered == local_answered
    assert all(5 not in workers and len(workers) == 4 for workers in ray_answered)
    for ray_output, local_output in zip(ray_outputs, local_outputs):
        np.testing.assert_allclose(ray_output, local_output, rtol=1e-12, atol=1e-12)


def test_killed_actor_counts_as_straggler(ray_backend_module, onnx_model):
    queries = make_queries(4, seed=20)
    code = {**CODE, "wait": "deadline", "deadline": 2.0}
    backend = ray_backend_module.RayBackend(onnx_model, 6, max_restarts=0)
    with CodedInferenceSession(onnx_model, **code, backend=backend) as session:
        before = session.run(None, {"x": queries})[0]
        backend.kill_worker(2, restart=False)
        after = session.run(None, {"x": queries})[0]
        report = session.last_run.groups[0]

    # A local session where worker 2 fails in every call decodes from the same five workers.
    with CodedInferenceSession(onnx_model, **code, faults=FaultPlan(fail=(2,))) as local:
        expected = local.run(None, {"x": queries})[0]

    assert report.answered == (0, 1, 3, 4, 5)
    assert "actor died" in report.failed[2]
    assert before.shape == after.shape
    np.testing.assert_allclose(after, expected, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"worker index must be in \[0, 5\], got 6"):
        backend.kill_worker(6)


def test_http_server_on_ray_backend(ray_backend_module, onnx_model):
    queries = make_queries(5, seed=21)
    backend = ray_backend_module.RayBackend(onnx_model, EXACT_CODE["num_workers"])
    with (
        CodedInferenceSession(onnx_model, **EXACT_CODE, backend=backend) as session,
        ServerThread(session, ServeConfig(port=0)) as server,
    ):
        body = {"inputs": [{"name": "x", "shape": [5, 1, 4, 4], "datatype": "FP32", "data": queries.ravel().tolist()}]}
        response = httpx.post(server.url + "/v2/models/mlp/infer", json=body, timeout=30)
        expected = session.predict_uncoded(queries)

    assert response.status_code == 200
    assert response.json()["parameters"]["coding"] == "exact"
    logits = np.asarray(response.json()["outputs"][0]["data"]).reshape(5, 10)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


def test_ray_gather_rejects_invalid_arguments(ray_backend_module, onnx_model):
    # RayBackend checks its arguments with the same rules and messages as LocalBackend.
    queries = np.zeros((2, 6, 1, 4, 4))
    with ray_backend_module.RayBackend(onnx_model, 6) as backend:
        with pytest.raises(TypeError, match="needed must be an int, got True"):
            backend.gather(queries, needed=True, timeout=1.0)
        with pytest.raises(ValueError, match=r"needed must satisfy 1 <= needed <= num_workers=6, got 7"):
            backend.gather(queries, needed=7, timeout=1.0)
        with pytest.raises(ValueError, match=r"N = num_workers = 6, got shape \(2, 5, 1, 4, 4\)"):
            backend.gather(queries[:, :5], needed=4, timeout=1.0)
        with pytest.raises(ValueError, match="timeout must be finite and > 0 seconds, got timeout=0.0"):
            backend.gather(queries, needed=4, timeout=0)
        with pytest.raises(ValueError, match="collect_for must be finite and >= 0 seconds, got collect_for=-1.0"):
            backend.gather(queries, needed=4, timeout=1.0, collect_for=-1)
        with pytest.raises(TypeError, match=r"output_names must be a sequence of names or None, got 'logits'"):
            backend.gather(queries, "logits", needed=4, timeout=1.0)
        with pytest.raises(TypeError, match="faults must be a FaultPlan or None, got str; use FaultPlan.parse"):
            backend.faults = "fail=1"
        assert backend.faults is None
