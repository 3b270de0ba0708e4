"""The differential-privacy options shared by the commands that run a coded session."""

from __future__ import annotations

import click

from approxifer_onnx.privacy import PRIVACY_PLACEMENTS, LaplaceMechanism, check_bounds

__all__ = ["BoundsType", "privacy_options", "privacy_summary", "session_privacy_kwargs"]

#: Clipping range of the queries placement when --dp-bounds is not given: 8-bit images scaled to [0, 1].
DEFAULT_INPUT_RANGE = (0.0, 1.0)


class BoundsType(click.ParamType):
    """A "LOW,HIGH" pair of finite floats with LOW < HIGH."""

    name = "LOW,HIGH"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        parts = str(value).split(",")
        try:
            if len(parts) != 2:
                raise ValueError(f"expected two numbers separated by a comma, got {value!r}")
            return check_bounds(float(parts[0]), float(parts[1]))
        except ValueError as error:
            self.fail(f"{error} (for example -10,10)", param, ctx)


def privacy_options(command):
    """Add --dp-epsilon, --dp-placement, --dp-bounds, --dp-budget and --dp-seed to a command."""
    options = [
        click.option("--dp-epsilon", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Add Laplace noise with this differential-privacy epsilon to each released "
                          "vector (a worker's outputs, or a coded query) [default: no noise]."),
        click.option("--dp-placement", type=click.Choice(PRIVACY_PLACEMENTS), default="outputs",
                     show_default=True,
                     help="outputs: clip and noise each worker's outputs, which protects queries "
                          "against whoever reads the results; queries: clip and noise each coded "
                          "query before it leaves the client, which protects queries against the "
                          "workers."),
        click.option("--dp-bounds", type=BoundsType(), default=None,
                     help="Clipping range: of each output value for --dp-placement outputs "
                          "(required there, e.g. -10,10), of each input value for queries "
                          "[default for queries: 0,1]."),
        click.option("--dp-budget", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Stop with an error before the total epsilon spent would exceed this "
                          "[default: no limit]."),
        click.option("--dp-seed", type=int, default=None,
                     help="Seed of the noise, for reproducible experiments only: whoever knows it "
                          "can remove the noise [default: fresh randomness from the system]."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def session_privacy_kwargs(dp_epsilon, dp_placement, dp_bounds, dp_budget, dp_seed) -> dict:
    """Turn the privacy options into keyword arguments of `CodedInferenceSession`.

    Returns
    -------
    dict
        Empty without --dp-epsilon, else ``privacy``, ``privacy_placement`` and
        ``privacy_budget``.

    Raises
    ------
    click.UsageError
        If an option needs another that is missing.
    """
    if dp_epsilon is None:
        orphan_options = [name for name, value in (("--dp-bounds", dp_bounds), ("--dp-budget", dp_budget),
                                          ("--dp-seed", dp_seed)) if value is not None]
        if orphan_options:
            raise click.UsageError(f"{', '.join(orphan_options)} needs --dp-epsilon; add for example --dp-epsilon 1")
        return {}
    if dp_bounds is None:
        if dp_placement == "outputs":
            raise click.UsageError(
                "--dp-placement outputs needs --dp-bounds LOW,HIGH, the clipping range of each "
                "output value that bounds the sensitivity; add for example --dp-bounds -10,10"
            )
        dp_bounds = DEFAULT_INPUT_RANGE
    lower, upper = dp_bounds
    mechanism = LaplaceMechanism(epsilon=dp_epsilon, lower=lower, upper=upper, rng=dp_seed)
    return {"privacy": mechanism, "privacy_placement": dp_placement, "privacy_budget": dp_budget}


def privacy_summary(privacy_kwargs: dict, accountant) -> dict | None:
    """Describe the privacy setting and the epsilon spent, for a JSON summary.

    Parameters
    ----------
    privacy_kwargs : dict
        The result of `session_privacy_kwargs`.
    accountant : PrivacyAccountant or None
        The session's accountant.

    Returns
    -------
    dict or None
        None when no noise was added.
    """
    if not privacy_kwargs:
        return None
    mechanism = privacy_kwargs["privacy"]
    return {
        "epsilon": mechanism.epsilon,
        "placement": privacy_kwargs["privacy_placement"],
        "bounds": [mechanism.lower, mechanism.upper],
        "budget": privacy_kwargs["privacy_budget"],
        "epsilon_spent": None if accountant is None else accountant.spent,
        "released_vectors": None if accountant is None else accountant.releases,
    }
