"""How far a runtime's probabilities are from Keras's: max absolute difference, Dice agreement.

The Dice agreement compares the masks (or labels) both give when thresholded at 0.5:
``2 |A & B| / (|A| + |B|)``, 1.0 where both are empty. The project's bars for an FP32 export
(``BARS``) are a max absolute difference of 1e-3 or less and a Dice agreement of 0.999 or more.
"""

from __future__ import annotations

from typing import Any

import numpy as np

BARS = {"max_abs_diff": 1e-3, "dice_agreement": 0.999}


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
        if ref.shape != out.shape:
            raise ValueError(f"outputs differ in size: {ref.shape} vs {out.shape}")
        diff = np.abs(ref.astype(np.float64) - out)
        self.max_abs = max(self.max_abs, float(diff.max(initial=0.0)))
        self.sum_abs += float(diff.sum())
        self.count += diff.size
        a, b = ref >= self.threshold, out >= self.threshold
        self.inter += int(np.count_nonzero(a & b))
        self.ref_on += int(np.count_nonzero(a))
        self.out_on += int(np.count_nonzero(b))

    def result(self) -> dict[str, Any]:
        """`max_abs_diff`, `mean_abs_diff`, `dice_agreement`, `values` and `within_bars`."""
        total = self.ref_on + self.out_on
        dice = 1.0 if total == 0 else 2.0 * self.inter / total
        mean = self.sum_abs / self.count if self.count else 0.0
        return {"max_abs_diff": self.max_abs, "mean_abs_diff": mean, "dice_agreement": dice,
                "values": self.count, "threshold": self.threshold,
                "within_bars": bool(self.max_abs <= BARS["max_abs_diff"]
                                    and dice >= BARS["dice_agreement"])}
