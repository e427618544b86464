"""Dice on mask arrays, in numpy alone: one pair, a whole set of masks, defects only.

The competition's Dice of a predicted mask X and a true mask Y is ``2 |X ∩ Y| / (|X| + |Y|)``,
defined as 1 when both are empty. :mod:`steel_keras.metrics.competition` computes it on RLE
tables (submissions); the functions here take arrays: the masks of an evaluation, a parity
check or a training summary. They import numpy only, so the runtimes' benchmark workers stay
light.
"""

from __future__ import annotations

import numpy as np

__all__ = ["competition_score", "dice", "dice_from_counts", "dice_per_class_on_defects"]


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice coefficient ``2 |X ∩ Y| / (|X| + |Y|)`` of two masks; 1.0 when both are empty.

    Args:
        pred: array of any shape; non-zero is foreground.
        truth: array of the same shape; non-zero is foreground.

    Example:
        >>> import numpy as np
        >>> dice(np.array([1, 1, 0, 0]), np.array([0, 1, 1, 0]))
        0.5
    """
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"dice needs masks of one shape, got {pred.shape} and {truth.shape}")
    pred, truth = pred != 0, truth != 0
    total = int(np.count_nonzero(pred)) + int(np.count_nonzero(truth))
    if total == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(pred & truth)) / total


def dice_from_counts(pred_pixels, true_pixels, intersection) -> np.ndarray:
    """Dice ``2 |X ∩ Y| / (|X| + |Y|)`` from pixel counts, element-wise; 1.0 where both are 0.

    Args:
        pred_pixels: ``|X|``, an int or an array of them.
        true_pixels: ``|Y|``, of the same shape.
        intersection: ``|X ∩ Y|``, of the same shape.

    Example:
        >>> dice_from_counts(np.array([4, 0, 3]), np.array([6, 0, 0]), np.array([4, 0, 0]))
        array([0.8, 1. , 0. ])
    """
    total = np.asarray(pred_pixels) + np.asarray(true_pixels)
    return np.where(total == 0, 1.0, 2.0 * np.asarray(intersection) / np.maximum(total, 1))


def competition_score(pred_masks: np.ndarray, true_masks: np.ndarray) -> float:
    """The competition's metric on mask arrays: mean Dice over every (image, class) pair.

    Args:
        pred_masks: predicted masks ``(N, H, W, C)``; non-zero is foreground.
        true_masks: true masks of the same shape.

    Returns:
        The mean of the ``N * C`` pairs' Dice, empty pairs included (1 where both are empty):
        what :func:`competition_dice` gives for the same masks as RLE tables.

    Raises:
        ValueError: the shapes differ.
    """
    pred, true = np.asarray(pred_masks) != 0, np.asarray(true_masks) != 0
    if pred.shape != true.shape:
        raise ValueError(f"masks of different shapes: {pred.shape} and {true.shape}")
    areas = (1, 2)
    dice_per_pair = dice_from_counts(pred.sum(areas), true.sum(areas), (pred & true).sum(areas))
    return float(dice_per_pair.mean())


def dice_per_class_on_defects(
    prob: np.ndarray, truth: np.ndarray, threshold: float = 0.5
) -> np.ndarray:
    """Mean Dice per class over the (image, class) pairs whose true mask is not empty.

    How well a segmenter draws defects, leaving the empty pairs to the classifier: a pixel is
    predicted where ``prob > threshold``.

    Args:
        prob: probabilities ``(N, H, W, C)``.
        truth: masks ``(N, H, W, C)`` of 0 and 1.
        threshold: float. Defaults to 0.5.

    Returns:
        A float array ``(C,)``: each class's mean Dice over the images with a mask of that
        class, ``nan`` where no image has one.

    Example:
        >>> truth = np.zeros((2, 2, 2, 1)); truth[0, 0, :, 0] = 1
        >>> prob = np.zeros((2, 2, 2, 1)); prob[0, 0, 0, 0] = 0.9; prob[1, 1, 1, 0] = 0.9
        >>> dice_per_class_on_defects(prob, truth)  # image 1 has no class-1 mask: not counted
        array([0.66666667])
    """
    pred, true = np.asarray(prob) > threshold, np.asarray(truth) > 0.5
    areas = (1, 2)
    dice_per_pair = dice_from_counts(pred.sum(areas), true.sum(areas), (pred & true).sum(areas))
    has = true.any(axis=areas)
    return np.array(
        [
            dice_per_pair[has[:, c], c].mean() if has[:, c].any() else np.nan
            for c in range(true.shape[-1])
        ]
    )
