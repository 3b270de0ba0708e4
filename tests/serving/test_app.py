"""The HTTP service on a real server and port, through httpx and tritonclient."""

import concurrent.futures
import gzip
import json
import re
import threading
import time

import httpx
import numpy as np
import pytest

from approxifer_onnx.faults import FaultPlan
from approxifer_onnx.serving import ServeConfig, ServerThread
from approxifer_onnx.session import CodedInferenceSession

from .conftest import EXACT_CODE, make_queries

# K = 4, S = 2, N = 6 with worker 1 failing in every call: the five other workers answer, so the
# decoded outputs are approximate but the same in every run.
APPROXIMATE_CODE = {"k": 4, "stragglers": 2, "num_workers": 6, "nodes": "second-kind-open", "wait": "deadline"}
FAILING_WORKER = FaultPlan(fail=(1,))


def infer_body(queries, **extra):
    return {
        "inputs": [{"name": "x", "shape": list(queries.shape), "datatype": "FP32", "data": queries.ravel().tolist()}],
        **extra,
    }


def logits_of(response):
    output = response.json()["outputs"][0]
    return np.asarray(output["data"], dtype=np.float64).reshape(output["shape"])


def python_api(session, queries):
    return session.run(None, {"x": queries})[0]


@pytest.fixture()
def server(exact_session):
    with ServerThread(exact_session, ServeConfig(port=0, max_queue_delay=0.01)) as running:
        yield running


def test_health_and_metadata(server):
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/v2/health/live").json() == {"live": True}
        assert client.get("/v2/health/ready").status_code == 200
        assert client.get("/v2/models/mlp/ready").json() == {"name": "mlp", "ready": True}
        assert "binary_tensor_data" in client.get("/v2").json()["extensions"]

        metadata = client.get("/v2/models/mlp").json()
        assert metadata["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 1, 4, 4]}]
        assert metadata["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]
        assert metadata["parameters"]["group_size"] == 4
        assert metadata["parameters"]["num_workers"] == 8
        assert client.get("/v2/models/mlp/versions/1").status_code == 200


def test_unknown_model_or_version_is_404(server):
    with httpx.Client(base_url=server.url) as client:
        response = client.post("/v2/models/resnet/infer", json=infer_body(make_queries(1)))
        assert response.status_code == 404
        assert response.json() == {"error": "model 'resnet' is not found; this server serves 'mlp'"}
        response = client.get("/v2/models/mlp/versions/2")
        assert response.status_code == 404
        assert "version '2' of model 'mlp' is not found" in response.json()["error"]


def test_json_infer_matches_python_api(server, exact_session):
    queries = make_queries(5, seed=4)
    response = httpx.post(server.url + "/v2/models/mlp/infer", json=infer_body(queries, id="request-7"))
    assert response.status_code == 200
    document = response.json()
    assert document["id"] == "request-7"
    assert document["model_name"] == "mlp"
    assert document["outputs"][0]["datatype"] == "FP32"
    np.testing.assert_allclose(logits_of(response), python_api(exact_session, queries), rtol=1e-6, atol=1e-6)

    parameters = document["parameters"]
    assert parameters["coding"] == "exact"
    assert parameters["approximate_inputs"] == 0
    assert parameters["workers_answered"] == "0,1,2,3,4,5,6,7"
    assert parameters["workers_late"] == ""
    assert parameters["workers_failed"] == ""
    assert parameters["workers_suspected"] == ""


def test_tritonclient_matches_python_api(server, exact_session):
    triton = pytest.importorskip("tritonclient.http", reason="needs tritonclient[http]")
    queries = make_queries(6, seed=5)
    expected = python_api(exact_session, queries)
    client = triton.InferenceServerClient(server.address)
    try:
        assert client.is_server_live()
        assert client.is_model_ready("mlp")
        assert client.get_model_metadata("mlp")["inputs"][0]["name"] == "x"
        for binary in (True, False):
            tensor = triton.InferInput("x", list(queries.shape), "FP32")
            tensor.set_data_from_numpy(queries, binary_data=binary)
            requested = [triton.InferRequestedOutput("logits", binary_data=binary)]
            result = client.infer("mlp", [tensor], outputs=requested)
            np.testing.assert_allclose(result.as_numpy("logits"), expected, rtol=1e-6, atol=1e-6)
            assert result.get_response()["parameters"]["coding"] == "exact"
    finally:
        client.close()


def test_approximate_response_reports_stragglers(model_path):
    queries = make_queries(4, seed=6)
    with (
        CodedInferenceSession(model_path, **APPROXIMATE_CODE, faults=FAILING_WORKER) as served,
        CodedInferenceSession(model_path, **APPROXIMATE_CODE, faults=FAILING_WORKER) as reference,
        ServerThread(served, ServeConfig(port=0)) as server,
    ):
        response = httpx.post(server.url + "/v2/models/mlp/infer", json=infer_body(queries))
        expected = python_api(reference, queries)
        uncoded = reference.predict_uncoded(queries)
    assert response.status_code == 200
    parameters = response.json()["parameters"]
    assert parameters["coding"] == "approximate"
    assert parameters["approximate_inputs"] == 4
    assert parameters["workers_answered"] == "0,2,3,4,5"
    assert parameters["workers_failed"] == "1"
    np.testing.assert_allclose(logits_of(response), expected, rtol=1e-5, atol=1e-5)
    # Approximate, so not equal to the model's own outputs.
    assert not np.allclose(logits_of(response), uncoded, rtol=1e-5, atol=1e-5)


def test_concurrent_requests_grouped_and_matched(server, exact_session):
    queries = make_queries(24, seed=7)
    expected = exact_session.predict_uncoded(queries)

    def send(index):
        return httpx.post(server.url + "/v2/models/mlp/infer", json=infer_body(queries[index : index + 1]), timeout=30)

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(send, range(len(queries))))

    batch_ids = set()
    for index, response in enumerate(responses):
        assert response.status_code == 200
        np.testing.assert_allclose(logits_of(response)[0], expected[index], rtol=1e-5, atol=1e-5)
        batch_ids.update(response.json()["parameters"]["batch_ids"].split(","))
    # Concurrent requests share coded calls.
    assert len(batch_ids) < len(queries)


# (request change, status, message pattern)
BAD_REQUESTS = [
    ({"json": {"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": [0.0] * 16}]}},
     400, r"input 'x' has shape \[1, 16\]; expected \[batch, 1, 4, 4\]"),
    ({"content": b"{not json"}, 400, r"request body is not valid JSON"),
    ({"content": b"{}", "headers": {"Content-Encoding": "br"}}, 415, r"Content-Encoding 'br' is not supported"),
    ({"content": b"garbage", "headers": {"Content-Encoding": "gzip"}}, 400, r"cannot be decompressed"),
]


@pytest.mark.parametrize("request_options, status, message", BAD_REQUESTS)
def test_bad_request_names_problem(server, request_options, status, message):
    response = httpx.post(server.url + "/v2/models/mlp/infer", **request_options)
    assert response.status_code == status
    assert re.search(message, response.json()["error"])


def test_gzip_request_accepted(server, exact_session):
    queries = make_queries(2, seed=8)
    body = gzip.compress(json.dumps(infer_body(queries)).encode())
    response = httpx.post(server.url + "/v2/models/mlp/infer", content=body, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 200
    np.testing.assert_allclose(logits_of(response), exact_session.predict_uncoded(queries), rtol=1e-5, atol=1e-5)


def test_body_over_limit_is_413(exact_session):
    queries = make_queries(4)
    with ServerThread(exact_session, ServeConfig(port=0, max_request_bytes=1000)) as server:
        plain = httpx.post(server.url + "/v2/models/mlp/infer", json=infer_body(queries))
        # 100 kB of zeros compress below the limit but not after decompression.
        bomb = gzip.compress(b" " * 100_000)
        packed = httpx.post(server.url + "/v2/models/mlp/infer", content=bomb, headers={"Content-Encoding": "gzip"})
    assert plain.status_code == 413
    assert re.search(r"request body of \d+ bytes exceeds the limit of 1000 bytes", plain.json()["error"])
    assert packed.status_code == 413
    assert "decompressed request body exceeds the limit of 1000 bytes" in packed.json()["error"]


def test_full_queue_is_503_with_retry_after(exact_session):
    config = ServeConfig(port=0, max_queue_delay=30.0, max_queue_size=3, shutdown_timeout=10.0)
    server = ServerThread(exact_session, config).start()
    try:
        url = server.url + "/v2/models/mlp/infer"
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(httpx.post, url, json=infer_body(make_queries(3)), timeout=60)
            while server.app.state.batcher.queue_depth < 3:
                time.sleep(0.01)
            rejected = httpx.post(url, json=infer_body(make_queries(1)))
            started = time.monotonic()
            server.stop()
            # Shutting down sends the queued group at once, without the 30 s queue delay.
            answered = waiting.result(timeout=20)
            assert time.monotonic() - started < 20
    finally:
        server.stop()
    assert rejected.status_code == 503
    assert rejected.headers["Retry-After"] == "1"
    assert "request queue is full: 3 inputs are waiting and the limit is 3" in rejected.json()["error"]
    assert answered.status_code == 200
    assert logits_of(answered).shape == (3, 10)


def test_request_timeout_is_504(exact_session):
    with ServerThread(exact_session, ServeConfig(port=0, max_queue_delay=30.0, request_timeout=0.2)) as server:
        response = httpx.post(server.url + "/v2/models/mlp/infer", json=infer_body(make_queries(1)))
    assert response.status_code == 504
    assert response.json() == {"error": "the request timed out after 0.2 s without a response"}


def test_shutdown_fails_requests_it_cannot_answer(model_path):
    hanging = FaultPlan(hang=tuple(range(8)))
    with CodedInferenceSession(model_path, **EXACT_CODE, timeout=30.0, faults=hanging) as session:
        server = ServerThread(session, ServeConfig(port=0, max_queue_delay=0.0, shutdown_timeout=0.3)).start()
        url = server.url + "/v2/models/mlp/infer"
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(httpx.post, url, json=infer_body(make_queries(1)), timeout=60)
            while server.app.state.batcher.inputs_in_flight == 0:
                time.sleep(0.01)
            stopper = threading.Thread(target=server.stop)
            stopper.start()
            response = waiting.result(timeout=20)
            stopper.join(20)
    assert response.status_code == 503
    assert response.json() == {"error": "the server shut down before responding to the request"}


def test_metrics_count_requests_and_stragglers(model_path):
    with (
        CodedInferenceSession(model_path, **APPROXIMATE_CODE, faults=FAILING_WORKER) as session,
        ServerThread(session, ServeConfig(port=0)) as server,
    ):
        for seed in range(3):
            httpx.post(server.url + "/v2/models/mlp/infer", json=infer_body(make_queries(4, seed=seed)))
        httpx.post(server.url + "/v2/models/mlp/infer", content=b"{}")
        text = httpx.get(server.url + "/metrics").text

    def sample(pattern):
        match = re.search(pattern + r" (\S+)", text)
        assert match, f"no sample {pattern!r} in /metrics"
        return float(match.group(1))

    assert sample(r'approxifer_requests_total\{code="200",model="mlp"\}') == 3
    assert sample(r'approxifer_requests_total\{code="400",model="mlp"\}') == 1
    assert sample(r'approxifer_request_latency_seconds_count\{model="mlp"\}') == 4
    assert sample(r'approxifer_inputs_total\{coding="approximate",model="mlp"\}') == 12
    assert sample(r'approxifer_stragglers_total\{kind="failed",model="mlp",worker="1"\}') == 3
    assert sample(r'approxifer_queue_depth\{model="mlp"\}') == 0
    # No error locator runs, so no worker is suspected.
    assert "approxifer_suspected_workers_total{" not in text
