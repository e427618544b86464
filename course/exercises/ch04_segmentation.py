"""Chapter 04 exercises: segmentation losses, a U-Net decoder block, Dice on defects.

Fill in each function below, replacing the ``raise NotImplementedError(...)`` line, and check
your work with::

    steel-keras grade --chapter 4 --path exercises

Masks are channels last: ``(batch, height, width, classes)``, 0 or 1; predictions are sigmoid
probabilities of the same shape. Write the losses with ``keras.ops`` (``ops.sum``,
``ops.mean``, ``ops.log``, ``ops.clip``), so that Keras can train with them; they then work on
numpy arrays too.
"""

from __future__ import annotations

import keras  # noqa: F401 - for your solutions
import numpy as np  # noqa: F401 - for your solutions
from keras import ops  # noqa: F401 - for your solutions


def soft_dice_loss(y_true, y_pred, smooth: float = 1.0):
    """Exercise 4.1: the soft Dice loss, one value per image.

    For image ``b`` and channel ``c``, with sums over that image's pixels,

        D_bc = (2 * sum(y * p) + smooth) / (sum(y) + sum(p) + smooth)

    and the loss of image ``b`` is ``1 - mean_c(D_bc)``.

    Args:
        y_true: masks ``(B, H, W, C)`` of 0 and 1.
        y_pred: probabilities ``(B, H, W, C)``.
        smooth: float. Added to numerator and denominator: an empty mask predicted empty then
            scores a perfect Dice of 1. Defaults to 1.0.

    Returns:
        A tensor (or array) of shape ``(B,)``.

    Example:
        >>> y = np.array([[[[1.0], [0.0]]]])
        >>> p = np.array([[[[0.5], [0.5]]]])
        >>> float(soft_dice_loss(y, p)[0])  # 1 - (2 * 0.5 + 1) / (1 + 1 + 1)
        0.333...

    Hints:
        - ``ops.sum(x, axis=(1, 2))`` sums over height and width, leaving ``(B, C)``.
    """
    raise NotImplementedError("Exercise 4.1: soft_dice_loss is not written yet")


def bce_dice_loss(y_true, y_pred, bce_weight: float = 0.75, dice_weight: float = 0.25):
    """Exercise 4.2: a weighted sum of binary cross-entropy and the soft Dice loss, per image.

    The BCE of image ``b`` is the mean over its pixels and channels of

        -(y * log(p) + (1 - y) * log(1 - p))

    with ``p`` clipped to ``[1e-7, 1 - 1e-7]`` so that ``log`` stays finite. The loss is
    ``bce_weight * BCE_b + dice_weight * (soft Dice loss of exercise 4.1, smooth 1)``.

    Args:
        y_true: masks ``(B, H, W, C)`` of 0 and 1.
        y_pred: probabilities ``(B, H, W, C)``.
        bce_weight: float. Defaults to 0.75 (the winning solution's mix).
        dice_weight: float. Defaults to 0.25.

    Returns:
        A tensor (or array) of shape ``(B,)``.

    Example:
        >>> y = np.array([[[[1.0], [0.0]]]])
        >>> p = np.array([[[[0.5], [0.5]]]])
        >>> float(bce_dice_loss(y, p)[0])  # 0.75 * ln 2 + 0.25 / 3
        0.603...
    """
    raise NotImplementedError("Exercise 4.2: bce_dice_loss is not written yet")


def decoder_block(x, skip, filters: int, name: str):
    """Exercise 4.3: one U-Net decoder block.

    Layers, in this order, with these names:

    1. ``keras.layers.UpSampling2D(2, name=f"{name}_upsample")`` on ``x``;
    2. ``keras.layers.Concatenate(name=f"{name}_concat")`` of the upsampled ``x`` and
       ``skip``, in that order;
    3. twice, for ``part`` in ``"a"`` then ``"b"``:
       ``keras.layers.Conv2D(filters, 3, padding="same", use_bias=False,
       name=f"{name}{part}_conv")``, ``keras.layers.BatchNormalization(name=f"{name}{part}_bn")``
       and ``keras.layers.ReLU(name=f"{name}{part}_relu")``.

    Args:
        x: a Keras tensor ``(B, h, w, channels)`` from the layer below.
        skip: a Keras tensor ``(B, 2h, 2w, skip_channels)`` from the encoder.
        filters: int. Filters of both convolutions.
        name: str. Prefix of the block's layer names, e.g. ``"decoder1"``.

    Returns:
        The Keras tensor ``(B, 2h, 2w, filters)`` of the last ReLU.

    Example:
        >>> x, skip = keras.Input((4, 6, 32)), keras.Input((8, 12, 16))
        >>> decoder_block(x, skip, 16, "decoder1").shape
        (None, 8, 12, 16)
    """
    raise NotImplementedError("Exercise 4.3: decoder_block is not written yet")


def dice_per_class_on_defects(prob: np.ndarray, truth: np.ndarray,
                              threshold: float = 0.5) -> np.ndarray:
    """Exercise 4.4: the competition's Dice per class, on the pairs that have a defect.

    A pixel is predicted when ``prob > threshold``. The Dice of one (image, class) pair is
    ``2 |X ∩ Y| / (|X| + |Y|)``. Only pairs whose true mask is not empty count: this is how
    well the segmenter draws defects, leaving empty pairs to the classifier.

    Args:
        prob: probabilities ``(N, H, W, C)``.
        truth: masks ``(N, H, W, C)`` of 0 and 1.
        threshold: float. Defaults to 0.5.

    Returns:
        A float array of shape ``(C,)``: for each class, the mean Dice over the images whose
        true mask of that class is not empty, or ``nan`` where no image has that class.

    Example:
        >>> truth = np.zeros((2, 2, 2, 1)); truth[0, 0, :, 0] = 1
        >>> prob = np.zeros((2, 2, 2, 1)); prob[0, 0, 0, 0] = 0.9; prob[1, 1, 1, 0] = 0.9
        >>> dice_per_class_on_defects(prob, truth)  # image 1 has no class-1 mask: not counted
        array([0.66666667])

    Hints:
        - Sum over axes 1 and 2 to get ``(N, C)`` tables of areas and intersections.
        - ``np.nan`` for a class no image has; ``np.where`` avoids dividing by zero.
    """
    raise NotImplementedError("Exercise 4.4: dice_per_class_on_defects is not written yet")
