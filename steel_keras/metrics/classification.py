"""Classifier metrics in numpy: ROC AUC, the ROC curve and the confusion matrix."""

from __future__ import annotations

import numpy as np


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
    return {"tp": int((truth & predicted).sum()), "fp": int((~truth & predicted).sum()),
            "tn": int((~truth & ~predicted).sum()), "fn": int((truth & ~predicted).sum())}
