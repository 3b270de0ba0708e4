"""End-to-end tests of the privacy option through CodedInferenceSession and real onnxruntime workers.

With K = 1 and S = 0 there is one worker whose node decodes exactly, so the session's output is
the released worker output itself and the noise can be checked against its distribution.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from approxifer_onnx.privacy import LaplaceMechanism, PrivacyBudgetExceededError
from approxifer_onnx.session import CodedInferenceSession
from tests.fixtures import QUERY_SHAPE, linear_classifier_weights, write_linear_classifier

NUM_CLASSES = 3
ALPHA = 0.001  # significance level of the seeded goodness-of-fit tests


@pytest.fixture
def linear_path(tmp_path):
    # float64 weights and inputs, so the only difference from the exact logits is the noise
    return write_linear_classifier(tmp_path / "linear.onnx", num_classes=NUM_CLASSES, dtype=np.float64)


def exact_logits(x):
    weight, bias = linear_classifier_weights(NUM_CLASSES, dtype=np.float64)
    return x.reshape(len(x), -1) @ weight + bias


def run(session, x):
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def unit_queries(count, seed=0):
    return np.random.default_rng(seed).uniform(0.0, 1.0, size=(count, *QUERY_SHAPE))


def test_outputs_placement_noise_is_laplace(linear_path):
    # bounds [-20, 20] contain every logit of these queries, and C = 3 gives sensitivity 120, scale 2
    epsilon = 60.0
    x = unit_queries(3000)
    assert np.abs(exact_logits(x)).max() < 20
    mechanism = LaplaceMechanism(epsilon=epsilon, lower=-20.0, upper=20.0, rng=3)
    with CodedInferenceSession(linear_path, k=1, stragglers=0, privacy=mechanism) as session:
        noise = (run(session, x) - exact_logits(x)).ravel()
        # one released vector per query: 3000 groups of one worker
        assert session.privacy_spent == pytest.approx(3000 * epsilon)
        assert session.privacy.accountant.releases == 3000
    assert stats.kstest(noise, "laplace", args=(0.0, 2.0)).pvalue > ALPHA


def test_outputs_placement_clips_before_noise(linear_path):
    # bounds [-0.5, 0.5] clip most logits; with epsilon = 1e9 the noise is below 1e-7
    x = unit_queries(50)
    mechanism = LaplaceMechanism(epsilon=1e9, lower=-0.5, upper=0.5, rng=4)
    with CodedInferenceSession(linear_path, k=1, stragglers=0, privacy=mechanism) as session:
        released = run(session, x)
    np.testing.assert_allclose(released, np.clip(exact_logits(x), -0.5, 0.5), atol=1e-6)


def test_queries_placement_noise_passes_through_model(linear_path):
    # d = 16 pixels in [0, 1] give sensitivity 16, and epsilon = 8 gives scale 2 per pixel. So the
    # logit noise of class c is W[:, c] . noise with variance 2 * 2**2 * sum_i W[i, c]**2
    epsilon = 8.0
    x = unit_queries(4000, seed=1)
    weight, _ = linear_classifier_weights(NUM_CLASSES, dtype=np.float64)
    mechanism = LaplaceMechanism(epsilon=epsilon, lower=0.0, upper=1.0, rng=5)
    with CodedInferenceSession(linear_path, k=1, stragglers=0, privacy=mechanism,
                               privacy_placement="queries") as session:
        logit_noise = run(session, x) - exact_logits(x)
        assert session.privacy_spent == pytest.approx(4000 * epsilon)

    expected_variance = 2 * 2.0**2 * np.sum(weight**2, axis=0)
    # the relative standard error of a variance from 4000 samples is below 3%, so allow 10%
    np.testing.assert_allclose(logit_noise.var(axis=0), expected_variance, rtol=0.10)
    # the mean is zero within 5 standard errors
    standard_error = np.sqrt(expected_variance / len(x))
    assert np.all(np.abs(logit_noise.mean(axis=0)) < 5 * standard_error)


def test_queries_placement_charges_each_coded_query(linear_path):
    # 10 queries in groups of K = 4 make 3 groups of N = 5 coded queries: 15 released vectors
    mechanism = LaplaceMechanism(epsilon=0.25, lower=0.0, upper=1.0, rng=6)
    with CodedInferenceSession(linear_path, k=4, stragglers=1, wait="deadline", privacy=mechanism,
                               privacy_placement="queries") as session:
        run(session, unit_queries(10))
        assert session.privacy.accountant.releases == 15
        assert session.privacy_spent == pytest.approx(3.75)


def test_budget_exceeded_releases_nothing(linear_path):
    mechanism = LaplaceMechanism(epsilon=1.0, lower=-20.0, upper=20.0, rng=7)
    with CodedInferenceSession(linear_path, k=4, stragglers=1, wait="deadline", privacy=mechanism,
                               privacy_budget=7.0) as session:
        run(session, unit_queries(4))  # one group of N = 5 workers: 5 spent
        with pytest.raises(PrivacyBudgetExceededError,
                           match=r"releasing 5 vectors at epsilon=1 would spend 10 of budget=7"):
            run(session, unit_queries(4))
        assert session.privacy_spent == 5.0
        # the failed call charged nothing, so 2 of the budget remain
        assert session.privacy.accountant.remaining == 2.0
