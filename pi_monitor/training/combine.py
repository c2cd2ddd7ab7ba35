"""How a join's members' calibrated logits become one (numpy only, so the command line can offer
the names without importing onnx): their mean, their least (stop 48: "every member must hear a
cry", so one member sure of a cat no longer carries the join), or their mean gated as the least
is (stop 50).

The least is gated by the first member: below the lowest threshold any setting allows
(`OFF_THRESHOLD_MIN`), the least is below every threshold whatever the others say, so there the
first member's logit stands and the others are not run (the live service pays for them only on
candidates). Every detection decision equals the plain least's; only scores below the gate differ.
The gate is half that threshold: gated at the threshold itself, the cries the first member
scores about 0.1 fell below non-cries that only the least had pushed down, and clip AUC with them
(0.9963 against the plain least's 0.9977 on validation; a gate of 0.1 or lower keeps it, stop 49).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from pi_monitor.config import OFF_THRESHOLD_MIN

GATE = OFF_THRESHOLD_MIN / 2  # a probability
GATE_LOGIT = math.log(GATE / (1 - GATE))


def mean(logits: Sequence[np.ndarray]) -> np.ndarray:
    return np.mean(logits, axis=0)


def gated(logits: Sequence[np.ndarray], combined: np.ndarray) -> np.ndarray:
    """`combined` where the first member reaches the gate, the first member's logit elsewhere."""
    first = logits[0]
    return np.where(first < GATE_LOGIT, first, combined)


def least(logits: Sequence[np.ndarray]) -> np.ndarray:
    return gated(logits, np.min(logits, axis=0))


def gated_mean(logits: Sequence[np.ndarray]) -> np.ndarray:
    """The mean where the first member reaches the gate, so the others run only there, as for
    the least. Not decision-safe: a window the first scores under the gate keeps the first's
    logit even where the others are sure enough to lift the plain mean over the threshold (at
    0.95, a second member over 0.9997), so it is judged as a model of its own."""
    return gated(logits, mean(logits))


COMBINE: dict[str, Callable[[Sequence[np.ndarray]], np.ndarray]] = {
    "mean": mean,
    "min": least,
    "gated-mean": gated_mean,
}
