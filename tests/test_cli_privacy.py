"""Tests of the shared --dp-* options, through a real click command."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from approxifer_onnx.privacy import LaplaceMechanism, PrivacyAccountant
from approxifer_onnx_cli.privacy import privacy_options, privacy_summary, session_privacy_kwargs


@click.command()
@privacy_options
def show(**options):
    """Print the session keyword arguments that the options produce."""
    kwargs = session_privacy_kwargs(**options)
    accountant = PrivacyAccountant() if kwargs else None
    if accountant is not None:
        accountant.record(3, kwargs["privacy"].epsilon)
    click.echo(json.dumps(privacy_summary(kwargs, accountant)))


def invoke(*arguments):
    return CliRunner().invoke(show, list(arguments))


def test_no_epsilon_means_no_noise():
    result = invoke()
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) is None


def test_outputs_placement_with_bounds():
    result = invoke("--dp-epsilon", "2", "--dp-bounds=-10,10", "--dp-budget", "50")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary == {
        "epsilon": 2.0,
        "placement": "outputs",
        "bounds": [-10.0, 10.0],
        "budget": 50.0,
        "epsilon_spent": 6.0,
        "released_vectors": 3,
    }


def test_queries_placement_defaults_to_unit_range():
    result = invoke("--dp-epsilon", "0.5", "--dp-placement", "queries")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["placement"] == "queries"
    assert summary["bounds"] == [0.0, 1.0]


def test_outputs_placement_needs_bounds():
    result = invoke("--dp-epsilon", "1")
    assert result.exit_code == 2
    assert "--dp-placement outputs needs --dp-bounds LOW,HIGH" in result.output


def test_bounds_without_epsilon_rejected():
    result = invoke("--dp-bounds", "0,1", "--dp-seed", "3")
    assert result.exit_code == 2
    assert "--dp-bounds, --dp-seed needs --dp-epsilon" in result.output


@pytest.mark.parametrize(
    ("bounds", "message"),
    [
        ("1,0", "lower must be less than upper, got lower=1.0 and upper=0.0"),
        ("0;1", "expected two numbers separated by a comma, got '0;1'"),
        ("a,1", "could not convert string to float: 'a'"),
        ("0,inf", "upper must be in (-inf, inf), got upper=inf"),
    ],
)
def test_invalid_bounds_rejected(bounds, message):
    result = invoke("--dp-epsilon", "1", f"--dp-bounds={bounds}")
    assert result.exit_code == 2
    assert message in result.output


@pytest.mark.parametrize("epsilon", ["0.0", "-1.0"])
def test_nonpositive_epsilon_rejected(epsilon):
    result = invoke(f"--dp-epsilon={epsilon}", "--dp-bounds", "0,1")
    assert result.exit_code == 2
    assert f"{epsilon} is not in the range x>0" in result.output


def test_seed_makes_noise_reproducible():
    options = dict(dp_epsilon=1.0, dp_placement="outputs", dp_bounds=(-1.0, 1.0), dp_budget=None, dp_seed=7)
    first = session_privacy_kwargs(**options)["privacy"]
    second = session_privacy_kwargs(**options)["privacy"]
    assert isinstance(first, LaplaceMechanism)
    assert (first.randomise([0.0, 0.5]) == second.randomise([0.0, 0.5])).all()
