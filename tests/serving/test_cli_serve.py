"""The ``approxifer-onnx serve`` command: a real server process, its options and its shutdown."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from click.testing import CliRunner

from approxifer_onnx.session import CodedInferenceSession
from approxifer_onnx_cli.main import main

from .conftest import EXACT_CODE, make_queries

STARTUP_SECONDS = 60  # a generous bound: the process imports onnxruntime and starts 8 workers


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_ready(url, process):
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}: {process.stderr.read()}")
        try:
            if httpx.get(url + "/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"server at {url} was not ready within {STARTUP_SECONDS} s")


def test_serve_process_options_and_sigterm(tmp_path, model_path):
    config = tmp_path / "serve.toml"
    config.write_text(
        "[serve]\n"
        'k = 4\nstragglers = 0\nnum-workers = 8\nnodes = "second-kind-open"\nwait = "deadline"\n'
        'model-name = "from-file"\nmax_queue_delay = 0.001\n'
    )
    port = free_port()
    environment = {
        **os.environ,
        "APPROXIFER_ONNX_SERVE_MODEL_NAME": "from-env",  # beats the config file
        "APPROXIFER_ONNX_SERVE_PORT": "99999",  # invalid, so the test fails if it beat the flag
    }
    # The console script's entry point, run with this interpreter.
    command = [sys.executable, "-c", "from approxifer_onnx_cli.main import main; main()", "serve", str(model_path),
               "--config", str(config), "--port", str(port), "--log-format", "json"]
    process = subprocess.Popen(command, env=environment, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, process)
        queries = make_queries(3, seed=9)
        body = {"inputs": [{"name": "x", "shape": [3, 1, 4, 4], "datatype": "FP32", "data": queries.ravel().tolist()}]}
        response = httpx.post(url + "/v2/models/from-env/infer", json=body, timeout=30)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert response.status_code == 200
    with CodedInferenceSession(model_path, **EXACT_CODE) as session:
        expected = session.run(None, {"x": queries})[0]
    logits = np.asarray(response.json()["outputs"][0]["data"]).reshape(3, 10)
    np.testing.assert_allclose(logits, expected, rtol=1e-6, atol=1e-6)

    # uvicorn re-raises the signal after its graceful shutdown, as a process stopped by it should.
    assert process.returncode == -signal.SIGTERM
    records = [json.loads(line) for line in process.stderr.read().splitlines() if line.startswith("{")]
    messages = [record["message"] for record in records]
    assert any(message.startswith("server started: model=from-env k=4 num_workers=8") for message in messages)
    assert "server stopped: model=from-env" in messages


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("serve.toml", "colour = 'blue'\n", r"sets unknown option 'colour'; known options: "),
        ("serve.yaml", "k: 4\n", r"has extension '.yaml'; use .toml or .json"),
        ("serve.json", "{k: 4", r"is not valid JSON"),
    ],
)
def test_bad_config_file_rejected(tmp_path, model_path, name, text, message):
    config = tmp_path / name
    config.write_text(text)
    result = CliRunner().invoke(main, ["serve", str(model_path), "--config", str(config)])
    assert result.exit_code == 2
    output = " ".join(result.output.split())  # click wraps long messages
    assert "Invalid value for '--config'" in output
    assert re.search(message, output)


def test_batch_size_not_multiple_of_k_rejected(model_path):
    result = CliRunner().invoke(main, ["serve", str(model_path), "-k", "4", "--max-batch-size", "6"])
    assert result.exit_code == 1
    assert "max_batch_size=6 must be a multiple of K=4" in result.output
