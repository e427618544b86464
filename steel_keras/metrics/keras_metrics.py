"""Dice for Keras training, with the competition's definition: a mean over (image, class) pairs.

For one image and one class, with the predicted mask `X = p > threshold` and the true mask `Y`,

    Dice = 2 * |X ∩ Y| / (|X| + |Y|),   and Dice = 1 when both are empty,

and the score is the mean of that over every (image, class) pair, as in the Kaggle competition
(`steel_keras.metrics.competition` computes the same on whole submissions with numpy).
`DicePerClass` is registered with Keras under the `steel_keras` package, so models compiled
with it save and load as `.keras` files.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from steel_keras.errors import ConfigError


def dice_per_pair(y_true, y_pred, threshold: float = 0.5, smooth: float = 0.0):
    """Dice of every (image, channel) pair, shape `(B, C)`, from masks `(B, ..., C)`.

    Args:
        y_true: tensor. True masks, 0 or 1, channels last.
        y_pred: tensor. Probabilities of the same shape.
        threshold: float. A pixel is predicted positive when `y_pred > threshold`.
            Defaults to `0.5`.
        smooth: float. Added to numerator and denominator. Defaults to `0.0`, the
            competition's definition.

    Returns:
        A float32 tensor `(B, C)`; pairs where both masks are empty score 1.
    """
    y_true = ops.cast(ops.convert_to_tensor(y_true) > 0.5, "float32")
    y_pred = ops.cast(ops.convert_to_tensor(y_pred) > threshold, "float32")
    axes = tuple(range(1, len(y_pred.shape) - 1))
    intersection = ops.sum(y_true * y_pred, axis=axes)
    total = ops.sum(y_true, axis=axes) + ops.sum(y_pred, axis=axes)
    dice = ops.divide_no_nan(2.0 * intersection + smooth, total + smooth)
    return ops.where(total == 0.0, ops.ones_like(dice), dice)


def dice_coefficient(y_true, y_pred, threshold: float = 0.5, smooth: float = 0.0):
    """Mean Dice over the (image, class) pairs of a batch: the competition's score.

    Args:
        y_true: tensor. True masks `(B, H, W, C)`, 0 or 1.
        y_pred: tensor. Probabilities `(B, H, W, C)`.
        threshold: float. A pixel is predicted positive when `y_pred > threshold`.
            Defaults to `0.5`.
        smooth: float. Added to numerator and denominator. Defaults to `0.0`.

    Returns:
        A scalar float32 tensor in `[0, 1]`.

    Example:

    >>> import numpy as np
    >>> y = np.zeros((1, 2, 2, 2)); y[0, 0, 0, 0] = 1
    >>> p = np.zeros((1, 2, 2, 2)); p[0, 0, :, 0] = 0.9
    >>> float(dice_coefficient(y, p))  # class 1: 2 * 1 / (1 + 2); class 2: empty-empty = 1
    0.8333...
    """
    return ops.mean(dice_per_pair(y_true, y_pred, threshold, smooth))


@keras.saving.register_keras_serializable(package="steel_keras")
class DicePerClass(keras.metrics.Metric):
    """Running mean Dice over the (image, class) pairs seen since the last reset.

    With `class_index=None` it averages every channel (the competition's score on a batch);
    with an integer it looks at that channel only, so one metric per class shows which
    defect classes the model is learning.

    Args:
        class_index: int or None. The channel to score (0 is ClassId 1), or `None` for all.
            Defaults to `None`.
        threshold: float. A pixel is predicted positive when `y_pred > threshold`.
            Defaults to `0.5`.
        smooth: float. Added to numerator and denominator. Defaults to `0.0`.
        name: str or None. Defaults to `"dice"`, or `"dice_class_{class_index + 1}"`.
        dtype: str or None. The dtype of the result. Defaults to `None` (`floatx`).

    Example:

    >>> import numpy as np
    >>> metric = DicePerClass(class_index=0)
    >>> metric.update_state(np.ones((2, 4, 4, 4)), np.full((2, 4, 4, 4), 0.9))
    >>> float(metric.result())
    1.0
    """

    def __init__(
        self,
        class_index: int | None = None,
        threshold: float = 0.5,
        smooth: float = 0.0,
        name: str | None = None,
        dtype: str | None = None,
    ) -> None:
        if name is None:
            name = "dice" if class_index is None else f"dice_class_{class_index + 1}"
        super().__init__(name=name, dtype=dtype)
        self.class_index = None if class_index is None else int(class_index)
        self.threshold = float(threshold)
        self.smooth = float(smooth)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def _select(self, y_true, y_pred):
        if self.class_index is None:
            return y_true, y_pred
        channels = y_pred.shape[-1]
        if channels is not None and not 0 <= self.class_index < channels:
            raise ConfigError(
                f"DicePerClass(class_index={self.class_index}) on a model with {channels} "
                f"channel(s): use class_index in 0..{channels - 1}, or None"
            )
        index = slice(self.class_index, self.class_index + 1)
        return y_true[..., index], y_pred[..., index]

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        y_true, y_pred = self._select(ops.convert_to_tensor(y_true), y_pred)
        dice = dice_per_pair(y_true, y_pred, self.threshold, self.smooth)
        weight = ops.ones_like(dice)
        if sample_weight is not None:
            sample_weight = ops.cast(ops.convert_to_tensor(sample_weight), "float32")
            weight = weight * ops.reshape(sample_weight, (-1, 1))
        self.total.assign_add(ops.cast(ops.sum(dice * weight), self.dtype))
        self.count.assign_add(ops.cast(ops.sum(weight), self.dtype))

    def result(self):
        return ops.divide_no_nan(self.total, self.count)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "class_index": self.class_index,
            "threshold": self.threshold,
            "smooth": self.smooth,
        }
