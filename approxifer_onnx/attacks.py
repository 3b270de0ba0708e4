"""Simulated Byzantine workers: wrong results injected into gathered worker outputs.

An attack replaces the (C,) result of a chosen worker in a group by a wrong one. The kinds:

=============  ==============================================================================
kind           wrong result
=============  ==============================================================================
gaussian       y + noise with standard deviation `sigma` on every class (1, 10 and 100 in the
               ApproxIFER paper's Byzantine experiments)
sign-flip      -y
constant       `value` in every class
permuted       the classes of y cyclically shifted by one, so every class changes when C > 1
argmax-flip    the smallest change of two classes of y that flips the argmax of one decoded
               query, for a decoder that trusts every available result; the change is
               (1 + `margin`) times the smallest that flips it
=============  ==============================================================================

Text form, read by `ByzantinePlan.parse`: ``KIND[:PARAMETER]@WORKERS``, with WORKERS either a
comma-separated list of worker indices (the same workers in every group) or ``random:COUNT``
(COUNT available workers drawn per group). Examples: ``gaussian:10@random:2``,
``sign-flip@0,5``, ``constant:0@3``, ``argmax-flip:0.1@random:1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ATTACK_KINDS", "ByzantineAttack", "ByzantinePlan"]

#: Attack kinds, by name, with the parameter each takes (None for none).
ATTACK_KINDS = {
    "gaussian": "sigma",
    "sign-flip": None,
    "constant": "value",
    "permuted": None,
    "argmax-flip": "margin",
}

_DEFAULT_PARAMETERS = {"sigma": 10.0, "value": 0.0, "margin": 0.1}


@dataclass(frozen=True)
class ByzantineAttack:
    """One kind of wrong result.

    Parameters
    ----------
    kind : str
        A name in `ATTACK_KINDS`.
    parameter : float, optional
        sigma (> 0) for "gaussian", value for "constant", margin (> 0) for "argmax-flip";
        defaults 10, 0 and 0.1.
    """

    kind: str
    parameter: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ATTACK_KINDS:
            choices = ", ".join(repr(name) for name in ATTACK_KINDS)
            raise ValueError(f"unknown attack {self.kind!r}; choose one of {choices}")
        name = ATTACK_KINDS[self.kind]
        if name is None:
            if self.parameter is not None:
                raise ValueError(f"attack {self.kind!r} takes no parameter, got {self.parameter!r}")
            return
        parameter = _DEFAULT_PARAMETERS[name] if self.parameter is None else self.parameter
        if isinstance(parameter, bool) or not isinstance(parameter, (int, float, np.floating)):
            raise TypeError(f"attack {self.kind!r} {name} must be a number, got {parameter!r}")
        if not np.isfinite(parameter) or (name != "value" and parameter <= 0):
            raise ValueError(
                f"attack {self.kind!r} {name} must be finite"
                + ("" if name == "value" else " and positive")
                + f", got {name}={parameter!r}"
            )
        object.__setattr__(self, "parameter", float(parameter))

    def corrupt(
        self,
        y: np.ndarray,
        wrong: np.ndarray,
        rng: np.random.Generator,
        *,
        decode_matrices: np.ndarray | None = None,
    ) -> np.ndarray:
        """Return a copy of worker results with the results of the wrong workers replaced.

        Parameters
        ----------
        y : array_like of float, shape (G, N, C)
            Honest worker results.
        wrong : array_like of bool, shape (G, N)
            Workers whose result to replace, per group.
        rng : numpy.random.Generator
            Source of the Gaussian noise.
        decode_matrices : array_like of float, shape (G, K, N), optional
            Required for "argmax-flip": per group, the matrix the attacker expects the decoder
            to use (zero columns for unavailable workers).

        Returns
        -------
        ndarray of float64, shape (G, N, C)
        """
        y = np.array(y, dtype=np.float64)
        wrong = np.asarray(wrong, dtype=bool)
        if y.ndim != 3 or wrong.shape != y.shape[:2]:
            raise ValueError(
                f"y must have shape (G, N, C) and wrong (G, N), got {y.shape} and {wrong.shape}"
            )
        groups, workers = np.nonzero(wrong)
        if self.kind == "gaussian":
            y[groups, workers] += rng.normal(scale=self.parameter, size=(groups.size, y.shape[2]))
        elif self.kind == "sign-flip":
            y[groups, workers] = -y[groups, workers]
        elif self.kind == "constant":
            y[groups, workers] = self.parameter
        elif self.kind == "permuted":
            y[groups, workers] = np.roll(y[groups, workers], 1, axis=1)
        else:
            if decode_matrices is None:
                raise ValueError("the argmax-flip attack needs decode_matrices of shape (G, K, N)")
            honest = y.copy()
            for group, worker in zip(groups, workers):
                y[group, worker] += _argmax_flip(
                    honest[group], decode_matrices[group], worker, self.parameter
                )
        return y

    def to_text(self) -> str:
        """Return the text form that `ByzantinePlan.parse` reads, without the workers."""
        if self.parameter is None:
            return self.kind
        return f"{self.kind}:{self.parameter:g}"


def _argmax_flip(results: np.ndarray, decode_matrix: np.ndarray, worker: int, margin: float):
    """Return the (C,) change of one worker's result that flips one decoded argmax at least cost.

    With estimates = decode_matrix @ results, a change d of the worker's result moves query j
    by decode_matrix[j, worker] * d. Raising the runner-up class r and lowering the top class t
    by s each closes the gap g_j when 2 s |decode_matrix[j, worker]| = g_j.
    """
    estimates = decode_matrix @ results  # (K, C)
    change = np.zeros(results.shape[1])
    if results.shape[1] < 2:
        return change
    ranked = np.argsort(-estimates, axis=1)
    top, runner_up = ranked[:, 0], ranked[:, 1]
    rows = np.arange(estimates.shape[0])
    gaps = estimates[rows, top] - estimates[rows, runner_up]
    weights = decode_matrix[:, worker]
    with np.errstate(divide="ignore"):
        costs = np.where(weights != 0, gaps / (2 * np.abs(weights)), np.inf)
    query = int(np.argmin(costs))
    if not np.isfinite(costs[query]):
        return change  # the decoder ignores this worker: no change of it flips anything
    step = (1 + margin) * costs[query] * np.sign(weights[query])
    change[runner_up[query]] += step
    change[top[query]] -= step
    return change


@dataclass(frozen=True)
class ByzantinePlan:
    """Plan of Byzantine workers: the attack, and the workers that apply it in each group.

    Parameters
    ----------
    attack : ByzantineAttack
    workers : tuple of int
        Wrong in every group, when available.
    count : int, >= 0
        Or: this many available workers drawn uniformly at random per group.
    """

    attack: ByzantineAttack
    workers: tuple[int, ...] = ()
    count: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.attack, ByzantineAttack):
            raise TypeError(f"attack must be a ByzantineAttack, got {type(self.attack).__name__}")
        workers = tuple(int(worker) for worker in self.workers)
        if any(worker < 0 for worker in workers) or len(set(workers)) != len(workers):
            raise ValueError(f"workers must be distinct non-negative indices, got {workers}")
        if isinstance(self.count, bool) or not isinstance(self.count, (int, np.integer)):
            raise TypeError(f"count must be an int, got {self.count!r}")
        if self.count < 0:
            raise ValueError(f"count must be at least 0, got count={self.count}")
        if workers and self.count:
            raise ValueError(
                f"give either fixed workers or a random count, got workers={workers} and "
                f"count={self.count}"
            )
        if not workers and not self.count:
            raise ValueError(
                "a Byzantine plan needs wrong workers: pass workers=(...) or count >= 1, "
                "as in gaussian:10@0,5 or gaussian:10@random:1"
            )
        object.__setattr__(self, "workers", workers)
        object.__setattr__(self, "count", int(self.count))

    @classmethod
    def parse(cls, text: str) -> ByzantinePlan:
        """Parse ``KIND[:PARAMETER]@WORKERS``, the grammar given in the module docstring."""
        if not isinstance(text, str):
            raise TypeError(f"Byzantine plan must be a string, got {type(text).__name__}")
        grammar = (
            "expected KIND[:PARAMETER]@WORKERS, for example gaussian:10@random:2 or sign-flip@0,5"
        )
        attack_text, separator, workers_text = text.strip().partition("@")
        if not separator or not workers_text:
            raise ValueError(f"invalid Byzantine plan {text!r}: missing @WORKERS; {grammar}")
        kind, _, parameter_text = attack_text.partition(":")
        try:
            parameter = float(parameter_text) if parameter_text else None
            if workers_text.startswith("random:"):
                return cls(ByzantineAttack(kind, parameter),
                           count=_parse_index(workers_text[7:], "random count"))
            workers = tuple(_parse_index(part, "worker index") for part in workers_text.split(","))
            return cls(ByzantineAttack(kind, parameter), workers=workers)
        except ValueError as error:
            raise ValueError(f"invalid Byzantine plan {text!r}: {error}; {grammar}") from None

    def to_text(self) -> str:
        """Return the text form that `parse` reads back."""
        if self.count:
            return f"{self.attack.to_text()}@random:{self.count}"
        return f"{self.attack.to_text()}@{','.join(str(worker) for worker in self.workers)}"

    def draw(self, available: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Choose the wrong workers of each group among the available ones.

        Parameters
        ----------
        available : array_like of bool, shape (G, N)
        rng : numpy.random.Generator

        Returns
        -------
        ndarray of bool, shape (G, N)

        Raises
        ------
        ValueError
            If a fixed worker index is out of range, or a group has fewer available workers
            than `count`.
        """
        available = np.asarray(available, dtype=bool)
        groups, num_workers = available.shape
        wrong = np.zeros_like(available)
        if self.workers:
            if max(self.workers) >= num_workers:
                raise ValueError(
                    f"Byzantine worker {max(self.workers)} is out of range for "
                    f"num_workers={num_workers}; use worker indices 0 to {num_workers - 1}"
                )
            wrong[:, list(self.workers)] = True
            return wrong & available
        for group in range(groups):
            candidates = np.flatnonzero(available[group])
            if candidates.size < self.count:
                raise ValueError(
                    f"group {group} has {candidates.size} available workers, fewer than the "
                    f"count={self.count} wrong ones to draw; lower the count or add workers"
                )
            wrong[group, rng.choice(candidates, self.count, replace=False)] = True
        return wrong


def _parse_index(text: str, name: str) -> int:
    """Parse a non-negative integer of a plan, naming it in the error."""
    text = text.strip()
    if not text.isdigit():
        raise ValueError(f"{name} must be a non-negative integer, got {text!r}")
    return int(text)
