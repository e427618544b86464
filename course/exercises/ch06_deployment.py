"""Chapter 06 exercises: checking an export against Keras, and measuring its speed.

Fill in each function below, replacing the ``raise NotImplementedError(...)`` line, and check
your work with::

    steel-keras grade --chapter 6 --path exercises

Everything here is numpy: ``reference`` is what the Keras model outputs, ``other`` what an
exported model (ONNX, SavedModel, TensorRT) outputs for the same inputs.
"""

from __future__ import annotations

import numpy as np


def max_abs_difference(reference: np.ndarray, other: np.ndarray) -> float:
    """Exercise 6.1: the largest absolute difference between two models' outputs.

    Args:
        reference: the reference outputs, any shape.
        other: the outputs to check, the same shape.

    Returns:
        ``max |reference - other|`` as a Python float (0.0 for empty arrays).

    Raises:
        ValueError: the shapes differ (an export that changed the output's shape is broken,
            and broadcasting would hide it).

    Example:
        >>> max_abs_difference(np.array([0.2, 0.7]), np.array([0.2001, 0.69]))
        0.01...
    """
    raise NotImplementedError("Exercise 6.1: max_abs_difference is not written yet")


def dice_agreement(reference: np.ndarray, other: np.ndarray, threshold: float = 0.5) -> float:
    """Exercise 6.2: how well the masks two models give agree, as a Dice score.

    Both outputs are thresholded (``>= threshold``) into masks A and B; the agreement is
    ``2 |A & B| / (|A| + |B|)``, and 1.0 when both masks are empty.

    Args:
        reference: the reference probabilities, any shape.
        other: the probabilities to check, the same shape.
        threshold: float. Defaults to 0.5.

    Returns:
        A float in [0, 1].

    Raises:
        ValueError: the shapes differ.

    Example:
        >>> dice_agreement(np.array([0.2, 0.7, 0.6]), np.array([0.3, 0.8, 0.4]))
        0.666...
    """
    raise NotImplementedError("Exercise 6.2: dice_agreement is not written yet")


def latency_percentiles(seconds: np.ndarray, percentiles: tuple[float, ...] = (50, 95)) -> dict:
    """Exercise 6.3: latency percentiles, in milliseconds.

    A mean hides the slow calls a user waits for; the median (p50) and the 95th percentile
    (p95) describe a latency distribution better.

    Args:
        seconds: the duration of each timed call, in seconds.
        percentiles: which percentiles, each in [0, 100].

    Returns:
        ``{p: milliseconds}`` for each ``p`` of ``percentiles``, computed with numpy's default
        (linear interpolation between the sorted values), as Python floats.

    Raises:
        ValueError: ``seconds`` is empty.

    Example:
        >>> latency_percentiles(np.array([0.010, 0.012, 0.011, 0.050]), (50,))
        {50: 11.5}
    """
    raise NotImplementedError("Exercise 6.3: latency_percentiles is not written yet")


def throughput(batch_size: int, seconds: np.ndarray) -> float:
    """Exercise 6.4: images per second over timed calls of one batch each.

    Args:
        batch_size: int. Images per call.
        seconds: the duration of each call, in seconds.

    Returns:
        All the images processed divided by all the time taken, as a float. (Not the mean
        of per-call rates: one slow call must weigh as much as the time it took.)

    Raises:
        ValueError: ``seconds`` is empty or sums to zero or less, or ``batch_size`` < 1.

    Example:
        >>> throughput(8, np.array([0.1, 0.3]))
        40.0
    """
    raise NotImplementedError("Exercise 6.4: throughput is not written yet")
