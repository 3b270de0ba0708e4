"""Fit the worker nodes of a code on a small unlabeled calibration set.

The search runs over the shifted node family beta_i = cos((i + s) pi / N) (see
`approxifer_onnx.coding.placements`) and keeps the shift whose decoded predictions agree most
often with the uncoded model's predictions. Agreement needs no labels, so the calibration set
can be any sample of inputs like those served, for example the training images.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from .coding.decoders import decode_with
from .coding.placements import SHIFT_PREFIX, make_code
from .evaluation import compute_coded_outputs, draw_available, predict_in_batches
from .model import OnnxModel
from .session import softmax

__all__ = ["DEFAULT_SHIFTS", "NodeFit", "fit_node_shift"]

logger = logging.getLogger(__name__)

#: Shifts searched by default. Shifts s and 1 - s give mirrored node sets, and the query nodes
#: are symmetric about 0, so [0, 1/2] covers the family up to the order of queries in a group.
DEFAULT_SHIFTS = tuple(np.round(np.linspace(0.0, 0.5, 11), 3))


@dataclass
class NodeFit:
    """Result of `fit_node_shift`.

    Attributes
    ----------
    shift : float
        The shift s with the highest agreement; the first one on ties.
    agreement : dict of float to float
        Agreement with the uncoded predictions for each shift tried.
    num_inputs : int
        Calibration inputs.
    """

    shift: float
    agreement: dict[float, float] = field(default_factory=dict)
    num_inputs: int = 0

    @property
    def nodes(self) -> str:
        """The node specification of the fitted shift, for `make_code`."""
        return f"{SHIFT_PREFIX}{float(self.shift)!r}"


def fit_node_shift(
    model: OnnxModel,
    inputs: np.ndarray,
    *,
    k: int,
    stragglers: int,
    num_workers: int | None = None,
    shifts=DEFAULT_SHIFTS,
    wait: str = "first-k",
    straggler_probability: float = 0.0,
    decode: str = "logits",
    decoder: str = "berrut",
    draws: int = 4,
    rng: int | np.random.Generator | None = None,
    batch_size: int = 256,
) -> NodeFit:
    """Choose the node shift that maximises agreement with the uncoded model on `inputs`.

    Every shift is scored on the same random grouping of `inputs` and the same straggler draws.

    Parameters
    ----------
    model : OnnxModel
    inputs : ndarray, shape (B, *shape)
        Unlabeled calibration inputs, B >= K.
    k, stragglers, num_workers
        The code, as in `BerrutCode`.
    shifts : sequence of float in [0, 1]
        Candidate shifts.
    wait, straggler_probability, decode, decoder
        As in `evaluate_protocol`.
    draws : int, >= 1
        Straggler draws per shift; more draws lower the noise of the agreement.
    rng : int or Generator, optional

    Returns
    -------
    NodeFit
    """
    if len(inputs) < k:
        raise ValueError(
            f"the calibration set needs at least K={k} inputs, got {len(inputs)}; "
            "use a larger calibration set"
        )
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got draws={draws}")
    shifts = [float(shift) for shift in shifts]
    if not shifts:
        raise ValueError("shifts is empty; give at least one shift in [0, 1]")
    rng = np.random.default_rng(rng)
    grouping_seed, draw_seed = (int(seed) for seed in rng.integers(2**63, size=2))
    uncoded = predict_in_batches(model, inputs, batch_size=batch_size).argmax(axis=1)

    agreement = {}
    for shift in shifts:
        code = make_code(k, stragglers, num_workers=num_workers, nodes=f"{SHIFT_PREFIX}{shift}")
        coded = compute_coded_outputs(
            model, inputs, code, rng=np.random.default_rng(grouping_seed), batch_size=batch_size
        )
        results = softmax(coded.outputs) if decode == "probabilities" else coded.outputs
        real = coded.order >= 0
        expected = uncoded[coded.order[real]]
        draw_rng = np.random.default_rng(draw_seed)
        matches = 0
        for _ in range(draws):
            available = draw_available(
                code, len(coded.order), wait=wait, rng=draw_rng,
                straggler_probability=straggler_probability,
            )
            predictions = decode_with(code, results, available, decoder).argmax(axis=-1)
            matches += int(np.sum(predictions[real] == expected))
        agreement[shift] = matches / (draws * int(real.sum()))
        logger.info("K=%d S=%d N=%d shift=%g: agreement %.4f", code.k, code.stragglers,
                    code.num_workers, shift, agreement[shift])

    best = max(agreement, key=agreement.get)
    return NodeFit(shift=best, agreement=agreement, num_inputs=len(inputs))
