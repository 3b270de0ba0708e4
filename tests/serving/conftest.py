"""Fixtures of the serving tests: tiny models, coded sessions and real servers on free ports."""

import numpy as np
import pytest

from approxifer_onnx.session import CodedInferenceSession

from ..fixtures import QUERY_SHAPE, write_mlp_classifier

pytest.importorskip("starlette", reason="the serving tests need the serve extra")
pytest.importorskip("uvicorn", reason="the serving tests need the serve extra")

# K = 4 and N = 8 second-kind-open nodes put every query node among the worker nodes, so with all
# workers answering (wait="deadline", no faults) decoding is exact and the outputs must equal
# the model's own outputs.
EXACT_CODE = {"k": 4, "stragglers": 0, "num_workers": 8, "nodes": "second-kind-open", "wait": "deadline"}


def make_queries(count, seed=0):
    """Return `count` float32 queries of shape QUERY_SHAPE."""
    return np.random.default_rng(seed).normal(size=(count, *QUERY_SHAPE)).astype(np.float32)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return write_mlp_classifier(tmp_path_factory.mktemp("serving") / "mlp.onnx", hidden=16)


@pytest.fixture()
def exact_session(model_path):
    with CodedInferenceSession(model_path, **EXACT_CODE) as session:
        yield session
