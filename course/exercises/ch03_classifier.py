"""Chapter 03 exercises: a binary defect classifier and how to judge it.

Fill in each function below, replacing the ``raise NotImplementedError(...)`` line, and check
your work with::

    steel-keras grade --chapter 3 --path exercises

Labels are 1 for an image with a defect and 0 for a clean one; scores are the classifier's
probabilities of a defect. The Keras exercises build layers with ``keras.layers`` on a Keras
tensor (what ``keras.Input`` returns and layers return when called on it).
"""

from __future__ import annotations

import keras  # noqa: F401 - for your solutions
import numpy as np


def majority_accuracy(labels: np.ndarray) -> float:
    """Exercise 3.1: the accuracy of always predicting the most common label.

    This is the bar a classifier must beat: on data that is half defect-free, answering "no
    defect" every time is already right half the time.

    Args:
        labels: 0/1 (or boolean) labels of any shape, e.g. ``(N,)`` or ``(N, 1)``.

    Returns:
        A float in [0.5, 1]: the share of the most common label.

    Raises:
        ValueError: ``labels`` is empty.

    Example:
        >>> majority_accuracy(np.array([0, 0, 1]))
        0.666...

    Hints:
        - The share of ones is ``labels.mean()``; the other label has ``1 - mean``.
    """
    raise NotImplementedError("Exercise 3.1: majority_accuracy is not written yet")


def classifier_head(features, dropout: float = 0.2):
    """Exercise 3.2: the classifier's head, from a feature map to P(defect).

    Three layers, in this order, with these names:

    1. ``keras.layers.GlobalAveragePooling2D(name="pool")``: the mean of each channel;
    2. ``keras.layers.Dropout(dropout, name="head_dropout")``;
    3. ``keras.layers.Dense(1, activation="sigmoid", name="has_defect")``.

    Args:
        features: a Keras tensor ``(batch, height, width, channels)``.
        dropout: float. The dropout rate. Defaults to 0.2.

    Returns:
        The Keras tensor ``(batch, 1)`` of the last layer.

    Example:
        >>> inputs = keras.Input((4, 6, 16))
        >>> keras.Model(inputs, classifier_head(inputs)).output_shape
        (None, 1)

    Hints:
        - Call each layer on the previous layer's output: ``x = layer(x)``.
    """
    raise NotImplementedError("Exercise 3.2: classifier_head is not written yet")


def build_small_cnn(input_shape: tuple[int, int, int]):
    """Exercise 3.3: the chapter's small CNN as a ``keras.Model``.

    First each image is standardised on its own (zero mean, unit variance):
    ``keras.layers.LayerNormalization(axis=(1, 2, 3), epsilon=1e-6, center=False,
    scale=False)``. Then five blocks, with 8, 16, 32, 64 and 128 filters; each block is

    - ``keras.layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False)``,
    - ``keras.layers.BatchNormalization(momentum=0.9)``,
    - ``keras.layers.ReLU()``,

    then the head of exercise 3.2 (global average pooling, dropout 0.2, one sigmoid unit).

    Args:
        input_shape: ``(height, width, 1)``.

    Returns:
        A ``keras.Model`` from ``keras.Input(shape=input_shape)`` to the ``(batch, 1)``
        probabilities. It has 99,113 weights whatever the image size.

    Hints:
        - ``image = keras.Input(shape=input_shape)``, then a loop over the filter counts.
        - Without a bias the batch normalisation's offset does the bias's job.
        - The chapter explains the standardisation and the momentum: without them this
          network trains but predicts at chance on new images.
        - ``keras.Model(image, outputs)``; your ``classifier_head`` gives the outputs.
    """
    raise NotImplementedError("Exercise 3.3: build_small_cnn is not written yet")


def roc_auc_by_ranks(truth: np.ndarray, score: np.ndarray) -> float | None:
    """Exercise 3.4: the area under the ROC curve, from ranks.

    The AUC is the probability that a random positive (defective) image scores higher than a
    random negative one, ties counting half. With the ranks ``1..N`` of all scores in
    increasing order (tied scores sharing their average rank), it is

        (sum of the positives' ranks - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)

    Args:
        truth: 0/1 labels, shape ``(N,)``.
        score: the scores, shape ``(N,)``.

    Returns:
        The AUC as a float in [0, 1], or ``None`` when ``truth`` holds only one class.

    Example:
        >>> roc_auc_by_ranks(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
        0.75

    Hints:
        - ``np.argsort`` gives the order; ``ranks[order] = np.arange(1, N + 1)``.
        - For ties, give every member of a group of equal scores their mean rank
          (``np.unique(score, return_inverse=True)`` groups them).
    """
    raise NotImplementedError("Exercise 3.4: roc_auc_by_ranks is not written yet")


def threshold_for_recall(truth: np.ndarray, score: np.ndarray, target_recall: float) -> float:
    """Exercise 3.5: the highest threshold that keeps at least ``target_recall``.

    An image is flagged when ``score >= threshold``; recall is the share of the positive
    images flagged. As a gate, the classifier should keep recall high and reject only what it
    is sure about: the highest threshold that still reaches the target rejects the most
    clean images.

    Args:
        truth: 0/1 labels, shape ``(N,)``.
        score: the scores, shape ``(N,)``.
        target_recall: float in (0, 1].

    Returns:
        One of the positives' scores, as a float: the largest ``t`` with
        ``mean(score[truth == 1] >= t) >= target_recall``.

    Raises:
        ValueError: no positive labels, or ``target_recall`` outside (0, 1].

    Example:
        >>> threshold_for_recall(np.array([1, 1, 0, 1]), np.array([0.9, 0.4, 0.8, 0.6]), 0.6)
        0.6

    Hints:
        - Sort the positives' scores in decreasing order; keeping the first ``k`` of them
          needs the threshold at the ``k``-th, and gives recall ``k / n_pos``.
        - Find the smallest such ``k`` by comparing recalls, ``np.arange(1, n_pos + 1) / n_pos
          >= target_recall``, not with ``ceil(target_recall * n_pos)``: in floating point
          ``0.7 * 10`` is ``7.000000000000001``.
    """
    raise NotImplementedError("Exercise 3.5: threshold_for_recall is not written yet")
