"""Chapter 05 exercises: the competition metric and the two-stage pipeline's knobs.

Fill in each function below, replacing the ``raise NotImplementedError(...)`` line, and check
your work with::

    steel-keras grade --chapter 5 --path exercises

Everything here is numpy: masks are 0/1 (or boolean) arrays, probabilities floats in [0, 1],
four classes in the last axis where there is one.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def pair_dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Exercise 5.1: the Dice score of one (image, class) pair, as the competition defines it.

    ``2 |X ∩ Y| / (|X| + |Y|)`` for the predicted mask X and the true mask Y (non-zero pixels
    are foreground), and **1.0 when both are empty**.

    Args:
        pred: a mask of any shape.
        truth: a mask of the same shape.

    Returns:
        A float in [0, 1].

    Raises:
        ValueError: the shapes differ.

    Example:
        >>> pair_dice(np.array([1, 1, 0, 0]), np.array([0, 1, 1, 0]))
        0.5
    """
    raise NotImplementedError("Exercise 5.1: pair_dice is not written yet")


def competition_score(pred_masks: np.ndarray, true_masks: np.ndarray) -> float:
    """Exercise 5.2: the competition's metric on mask arrays.

    The mean of ``pair_dice`` over every (image, class) pair: ``N * C`` pairs for arrays of
    shape ``(N, H, W, C)``, empty pairs included (they score 1 when predicted empty).

    Args:
        pred_masks: predicted masks ``(N, H, W, C)``.
        true_masks: true masks of the same shape.

    Returns:
        A float in [0, 1].

    Hints:
        - Sum over axes 1 and 2 to get ``(N, C)`` tables of areas and intersections; then
          there is no Python loop at all. ``np.where`` handles the empty pairs.
    """
    raise NotImplementedError("Exercise 5.2: competition_score is not written yet")


def remove_small_components(mask: np.ndarray, min_size: int) -> np.ndarray:
    """Exercise 5.3: remove the connected components smaller than ``min_size`` pixels.

    Components are 8-connected: pixels touching by a side or a corner belong together.

    Args:
        mask: a 2-D 0/1 (or boolean) mask.
        min_size: int. Components with fewer pixels are removed; 1 or less removes nothing.

    Returns:
        A boolean mask of the same shape: the pixels of the components that are kept.

    Example:
        >>> mask = np.array([[1, 1, 0, 0], [1, 0, 0, 1], [0, 0, 0, 0]])
        >>> remove_small_components(mask, 2).astype(int).tolist()
        [[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]

    Hints:
        - ``scipy.ndimage.label(mask, structure=np.ones((3, 3)))`` numbers the components;
          ``np.bincount`` of the labels gives their sizes (label 0 is the background).
    """
    raise NotImplementedError("Exercise 5.3: remove_small_components is not written yet")


def apply_min_area(masks: np.ndarray, min_area: list[int]) -> np.ndarray:
    """Exercise 5.4: drop each class's mask whole when it has fewer than ``min_area`` pixels.

    Small masks on an image are mostly false positives on empty pairs, each costing a full
    point of Dice; dropping them turns those pairs back into empty-predicted-empty.

    Args:
        masks: one image's masks ``(H, W, C)``, 0/1.
        min_area: C ints, one per class.

    Returns:
        A ``uint8`` array ``(H, W, C)``: channel ``c`` is the input's where it has at least
        ``min_area[c]`` pixels, else all zeros. The input is not modified.

    Example:
        >>> masks = np.zeros((2, 2, 2), np.uint8); masks[0, :, 0] = 1; masks[:, :, 1] = 1
        >>> apply_min_area(masks, [3, 3]).sum(axis=(0, 1)).tolist()
        [0, 4]
    """
    raise NotImplementedError("Exercise 5.4: apply_min_area is not written yet")


def gate_masks(masks: np.ndarray, gate_prob: np.ndarray,
               label_thresholds: list[float]) -> np.ndarray:
    """Exercise 5.5: the classifier as a gate.

    A class's mask is kept only where the classifier's probability reaches that class's label
    threshold (``gate_prob >= threshold``); otherwise it is emptied.

    Args:
        masks: one image's masks ``(H, W, C)``, 0/1.
        gate_prob: the classifier's probabilities for the image: shape ``(C,)`` (one per
            class) or ``(1,)`` (any defect, the same for every class).
        label_thresholds: C floats, one per class.

    Returns:
        A ``uint8`` array ``(H, W, C)``; the input is not modified.

    Example:
        >>> masks = np.ones((1, 1, 4), np.uint8)
        >>> gate_masks(masks, np.array([0.55]), [0.7, 0.5, 0.5, 0.6])[0, 0].tolist()
        [0, 1, 1, 0]

    Hints:
        - ``np.broadcast_to(gate_prob.ravel(), (C,))`` makes one probability per class.
    """
    raise NotImplementedError("Exercise 5.5: gate_masks is not written yet")


def hflip_tta(predict: Callable[[np.ndarray], np.ndarray], batch: np.ndarray) -> np.ndarray:
    """Exercise 5.6: test-time augmentation with a horizontal flip.

    Predict the batch as it is and flipped left-right, flip the second prediction back, and
    average the two.

    Args:
        predict: a function from images ``(B, H, W, 1)`` to probabilities ``(B, H, W, C)``
            (e.g. ``model.predict_on_batch``).
        batch: images ``(B, H, W, 1)``.

    Returns:
        The averaged probabilities ``(B, H, W, C)``, as a float array.

    Hints:
        - Width is axis 2 of ``(B, H, W, C)``: ``np.flip(x, axis=2)``.
        - Flip the *prediction* back before averaging, or the masks land on the wrong side.
    """
    raise NotImplementedError("Exercise 5.6: hflip_tta is not written yet")
