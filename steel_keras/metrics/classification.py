"""Classifier metrics in numpy: the majority-class accuracy, ROC AUC, the ROC curve, the
confusion matrix and the threshold that keeps a target recall."""

from __future__ import annotations

import numpy as np


def majority_accuracy(labels: np.ndarray) -> float:
    """The accuracy of always predicting the most common of the 0/1 ``labels``: the bar to beat.

    Raises:
        ValueError: ``labels`` is empty.

    Example:
        >>> majority_accuracy(np.array([0, 0, 1, 0]))
        0.75
    """
    labels = np.asarray(labels).astype(bool).ravel()
    if labels.size == 0:
        raise ValueError("majority_accuracy needs at least one label")
    share = float(labels.mean())
    return max(share, 1.0 - share)


def roc_auc(truth: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve: the probability a random positive outscores a random negative.

    Computed from ranks (the Mann-Whitney U statistic), ties counted as half. None when
    ``truth`` holds only one class.

    Example:
        >>> roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
        0.75
    """
    truth = np.asarray(truth).astype(bool).ravel()
    score = np.asarray(score, dtype=np.float64).ravel()
    n_pos, n_neg = int(truth.sum()), int((~truth).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(score.size, dtype=np.float64)
    sorted_scores = score[order]
    # Average ranks over ties.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    u = ranks[truth].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_curve(truth: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate, thresholds), thresholds decreasing."""
    truth = np.asarray(truth).astype(bool).ravel()
    score = np.asarray(score, dtype=np.float64).ravel()
    thresholds = np.unique(score)[::-1]
    tp = np.array([(score[truth] >= t).sum() for t in thresholds], dtype=np.float64)
    fp = np.array([(score[~truth] >= t).sum() for t in thresholds], dtype=np.float64)
    tpr = np.concatenate(([0.0], tp / max(1, truth.sum())))
    fpr = np.concatenate(([0.0], fp / max(1, (~truth).sum())))
    return fpr, tpr, np.concatenate(([np.inf], thresholds))


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray) -> dict[str, int]:
    """Counts of a binary decision: ``tp``, ``fp``, ``tn``, ``fn``."""
    truth = np.asarray(truth).astype(bool).ravel()
    predicted = np.asarray(predicted).astype(bool).ravel()
    return {
        "tp": int((truth & predicted).sum()),
        "fp": int((~truth & predicted).sum()),
        "tn": int((~truth & ~predicted).sum()),
        "fn": int((truth & ~predicted).sum()),
    }


def threshold_for_recall(truth: np.ndarray, score: np.ndarray, target_recall: float) -> float:
    """The highest threshold ``t`` (one of the positives' scores) with recall ``>= target_recall``.

    An image is flagged when ``score >= t``. As the two-stage pipeline's gate, the classifier
    should reject only what it is sure about: the highest such threshold rejects the most clean
    images while keeping the target recall.

    Raises:
        ValueError: no positive labels, or ``target_recall`` outside (0, 1].

    Example:
        >>> threshold_for_recall(np.array([1, 1, 0, 1]), np.array([0.9, 0.4, 0.8, 0.6]), 0.6)
        0.6
    """
    truth = np.asarray(truth).astype(bool).ravel()
    score = np.asarray(score, dtype=np.float64).ravel()
    if not 0 < target_recall <= 1:
        raise ValueError(f"target_recall must be in (0, 1], got {target_recall!r}")
    positives = np.sort(score[truth])[::-1]
    if positives.size == 0:
        raise ValueError("threshold_for_recall needs at least one positive label")
    # Keeping the k highest-scoring positives gives recall k / n; compare recalls rather than
    # computing ceil(target * n), which floating point gets wrong (0.7 * 10 > 7).
    recalls = np.arange(1, positives.size + 1) / positives.size
    return float(positives[np.argmax(recalls >= target_recall)])
