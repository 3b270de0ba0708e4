"""The load test program on a tiny model: it passes on a correct server and catches mix-ups."""

import copy
import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from .conftest import make_queries

LOAD_TEST = Path(__file__).resolve().parents[2] / "benchmarks" / "load_test.py"


@pytest.fixture(scope="module")
def load_test():
    # Imported by name from its folder, because its client process is started with "spawn" and
    # imports the module again by that name (spawn passes sys.path on to the child).
    sys.path.insert(0, str(LOAD_TEST.parent))
    try:
        yield importlib.import_module("load_test")
    finally:
        sys.path.remove(str(LOAD_TEST.parent))
        sys.modules.pop("load_test", None)


@pytest.fixture()
def data_path(tmp_path):
    path = tmp_path / "inputs.npz"
    np.savez(path, x=make_queries(50, seed=30), y=np.arange(50) % 10)
    return path


def test_small_run_loses_and_mixes_nothing(load_test, model_path, data_path, tmp_path):
    argv = ["--model", str(model_path), "--data", str(data_path), "--backend", "local", "--requests", "120",
            "--clients", "6", "-k", "4", "--stragglers", "2", "--faults", "p=0.2;delay=exp:0.01",
            "--time-cap", "60", "--output-dir", str(tmp_path / "results")]
    assert load_test.main(argv) == 0

    document = json.loads((tmp_path / "results" / "load_test.json").read_text())
    (result,) = document["results"]
    assert result["requests_answered"] == 120
    assert result["lost_requests"] == 0
    assert result["mismatched_responses"] == 0
    assert result["unverified_responses"] == 0
    assert result["killed_after_answered"] >= 60
    assert result["straggler_results"]["failed"] >= 1  # the killed worker fails every later call
    assert (tmp_path / "results" / "load_test.md").read_text().count("| local |") == 1


def test_verifier_catches_swapped_answers(load_test, exact_session):
    # Two responses of one call with their outputs exchanged, as a batcher bug would send them.
    queries = make_queries(4, seed=31)
    outputs = exact_session.run(None, {"x": queries})[0]
    answered = [
        {"image": index, "document": {
            "outputs": [{"data": outputs[index].tolist()}],
            "parameters": {"batch_ids": "1", "batch_offsets": str(index), "workers_answered": "0,1,2,3,4,5,6,7"},
        }}
        for index in range(4)
    ]
    assert load_test.verify_answers(exact_session, answered, queries) == (0, 0)

    swapped = copy.deepcopy(answered)
    swapped[0]["document"]["outputs"], swapped[2]["document"]["outputs"] = (
        answered[2]["document"]["outputs"], answered[0]["document"]["outputs"])
    assert load_test.verify_answers(exact_session, swapped, queries) == (2, 0)

    assert load_test.verify_answers(exact_session, answered[1:], queries) == (0, 3)
