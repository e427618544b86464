"""How far a runtime's probabilities are from Keras's: max absolute difference, Dice agreement.

:func:`max_abs_difference` and :func:`dice_agreement` compare two arrays; :class:`Parity`
accumulates both over batches.

The Dice agreement compares the masks (or labels) both give when thresholded at 0.5:
``2 |A & B| / (|A| + |B|)``, 1.0 where both are empty. The project's bars for an FP32 export
(``BARS``) are a max absolute difference of 1e-3 or less and a Dice agreement of 0.999 or more.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from steel_keras.metrics.masks import dice, dice_from_counts

BARS = {"max_abs_diff": 1e-3, "dice_agreement": 0.999}


def max_abs_difference(reference: np.ndarray, other: np.ndarray) -> float:
    """``max |reference - other|`` as a float (0.0 for empty arrays), in float64.

    Raises:
        ValueError: the shapes differ (an export that changed the output's shape is broken,
            and broadcasting would hide it).

    Example:
        >>> max_abs_difference(np.array([0.2, 0.7]), np.array([0.2, 0.75]))
        0.05...
    """
    reference, other = np.asarray(reference, np.float64), np.asarray(other, np.float64)
    if reference.shape != other.shape:
        raise ValueError(f"outputs differ in shape: {reference.shape} vs {other.shape}")
    return float(np.abs(reference - other).max(initial=0.0))


def dice_agreement(reference: np.ndarray, other: np.ndarray, threshold: float = 0.5) -> float:
    """Dice of the masks ``reference >= threshold`` and ``other >= threshold``; 1 if both empty.

    Raises:
        ValueError: the shapes differ.

    Example:
        >>> dice_agreement(np.array([0.2, 0.7, 0.6]), np.array([0.3, 0.8, 0.4]))
        0.666...
    """
    reference, other = np.asarray(reference), np.asarray(other)
    if reference.shape != other.shape:
        raise ValueError(f"outputs differ in shape: {reference.shape} vs {other.shape}")
    return dice(reference >= threshold, other >= threshold)


def as_arrays(output: Any) -> dict[str, np.ndarray]:
    """A model's output as `{name: float32 array}` (one unnamed output is `"output"`)."""
    if isinstance(output, dict):
        return {str(k): np.asarray(v, dtype=np.float32) for k, v in output.items()}
    if isinstance(output, list | tuple):
        return {f"output_{i}": np.asarray(v, dtype=np.float32) for i, v in enumerate(output)}
    return {"output": np.asarray(output, dtype=np.float32)}


def flatten(output: Any) -> np.ndarray:
    """Every output value in one float32 vector, outputs in name order."""
    arrays = as_arrays(output)
    return np.concatenate([arrays[k].ravel() for k in sorted(arrays)])


class Parity:
    """Running comparison of a runtime's outputs with reference (Keras) outputs.

    Example:

    >>> p = Parity()
    >>> p.update(np.array([0.2, 0.7]), np.array([0.2001, 0.69]))
    >>> round(p.result()["max_abs_diff"], 4), p.result()["dice_agreement"]
    (0.01, 1.0)
    """

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold
        self.max_abs = 0.0
        self.sum_abs = 0.0
        self.count = 0
        self.inter = self.ref_on = self.out_on = 0

    def update(self, reference: Any, output: Any) -> None:
        ref, out = flatten(reference), flatten(output)
        self.max_abs = max(self.max_abs, max_abs_difference(ref, out))
        self.sum_abs += float(np.abs(ref.astype(np.float64) - out).sum())
        self.count += ref.size
        a, b = ref >= self.threshold, out >= self.threshold
        self.inter += int(np.count_nonzero(a & b))
        self.ref_on += int(np.count_nonzero(a))
        self.out_on += int(np.count_nonzero(b))

    def result(self) -> dict[str, Any]:
        """`max_abs_diff`, `mean_abs_diff`, `dice_agreement`, `values` and `within_bars`."""
        # The Dice of all values seen, from running counts: dice_agreement of everything at once.
        agreement = float(dice_from_counts(self.ref_on, self.out_on, self.inter))
        mean = self.sum_abs / self.count if self.count else 0.0
        return {"max_abs_diff": self.max_abs, "mean_abs_diff": mean, "dice_agreement": agreement,
                "values": self.count, "threshold": self.threshold,
                "within_bars": bool(self.max_abs <= BARS["max_abs_diff"]
                                    and agreement >= BARS["dice_agreement"])}
