"""The reference solution of every exercise: the library's own function, or a thin wrapper.

``CHAPTERS`` maps a chapter (``"ch01"``) to its exercise module's name and to
``{exercise function name: reference}``. A reference is either ``"module:function"`` in the
library (imported only when asked for, so grading chapter 01 never imports Keras) or a function
defined below, where the exercise's signature is simpler than the library's. The wrappers are
written to read well on their own: ``steel-keras course student-copy --solutions`` copies their
bodies into the instructor's exercise files.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import numpy as np
import pandas as pd

__all__ = ["CHAPTERS", "chapters", "module_name", "solutions_for"]


def defect_free_ids(long_table: pd.DataFrame, all_ids: list[str]) -> list[str]:
    """The ids in ``all_ids`` without any mask in ``long_table``, sorted."""
    with_defects = set(long_table["ImageId"])
    return sorted(set(all_ids) - with_defects)


def per_image_table(long_table: pd.DataFrame, all_ids: list[str]) -> pd.DataFrame:
    """One row per image: ``ImageId, has_defect, classes, n_classes, area_1..area_4``."""
    from steel_keras.data.dataset import rle_area

    class_ids = [1, 2, 3, 4]
    areas = (long_table.assign(area=long_table["EncodedPixels"].map(rle_area))
             .pivot(index="ImageId", columns="ClassId", values="area")
             .reindex(index=sorted(set(all_ids)), columns=class_ids)
             .fillna(0).astype(np.int64))
    present = areas.to_numpy() > 0
    table = pd.DataFrame({"ImageId": areas.index.to_list()})
    table["has_defect"] = present.any(axis=1)
    table["classes"] = [" ".join(str(c) for c, p in zip(class_ids, row, strict=True) if p)
                        for row in present]
    table["n_classes"] = present.sum(axis=1).astype(np.int64)
    for c in class_ids:
        table[f"area_{c}"] = areas[c].to_numpy()
    return table


def class_balance(long_table: pd.DataFrame) -> pd.Series:
    """Number of images with a mask of each class, indexed 1-4 (zeros included)."""
    counts = long_table.groupby("ClassId")["ImageId"].nunique()
    return counts.reindex([1, 2, 3, 4], fill_value=0).astype(np.int64).rename("images")


def classes_per_image(long_table: pd.DataFrame, all_ids: list[str]) -> pd.Series:
    """Number of images with 0, 1, 2, 3 and 4 defect classes, indexed 0-4 (zeros included)."""
    per_image = long_table.groupby("ImageId")["ClassId"].nunique()
    n_classes = per_image.reindex(sorted(set(all_ids)), fill_value=0)
    counts = n_classes.value_counts().reindex(range(5), fill_value=0)
    return counts.astype(np.int64).rename("images")


def empty_pair_share(long_table: pd.DataFrame, n_images: int) -> float:
    """Share of the ``4 * n_images`` (image, class) pairs without a mask.

    That is the competition score of an all-empty submission: Dice is 1 on an empty pair
    predicted empty and 0 on a non-empty pair predicted empty.
    """
    n_masks = len(long_table)
    if n_images <= 0 or n_masks > 4 * n_images:
        raise ValueError(f"n_images={n_images} cannot hold {n_masks} masks; give the number of "
                         "images, defect-free ones included")
    return 1.0 - n_masks / (4 * n_images)


def majority_accuracy(labels: np.ndarray) -> float:
    """The accuracy of always predicting the most common of the 0/1 ``labels``."""
    labels = np.asarray(labels).astype(bool).ravel()
    if labels.size == 0:
        raise ValueError("majority_accuracy needs at least one label")
    share = float(labels.mean())
    return max(share, 1.0 - share)


def classifier_head(features, dropout: float = 0.2):
    """Global average pooling, dropout and one sigmoid unit: ``(B, H, W, C)`` -> ``(B, 1)``."""
    import keras

    x = keras.layers.GlobalAveragePooling2D(name="pool")(features)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    return keras.layers.Dense(1, activation="sigmoid", name="has_defect")(x)


def build_small_cnn(input_shape: tuple[int, int, int]):
    """The chapter's small CNN: per-image standardisation, five conv blocks, the head above.

    The library's ``build_classifier("small_cnn")`` has the same blocks and pools the
    features by their mean and their maximum (128 more weights in the head).
    """
    import keras

    image = keras.Input(shape=input_shape)
    x = keras.layers.LayerNormalization(axis=(1, 2, 3), epsilon=1e-6, center=False,
                                        scale=False)(image)
    for filters in (8, 16, 32, 64, 128):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
        x = keras.layers.ReLU()(x)
    return keras.Model(image, classifier_head(x))


def threshold_for_recall(truth: np.ndarray, score: np.ndarray, target_recall: float) -> float:
    """The highest threshold ``t`` (a positive's score) with recall ``>= target_recall``."""
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


def bce_dice_loss(y_true, y_pred, bce_weight: float = 0.75, dice_weight: float = 0.25):
    """``bce_weight * BCE + dice_weight * soft Dice loss``, one value per image."""
    from steel_keras.losses import soft_dice, weighted_bce

    return bce_weight * weighted_bce(y_true, y_pred) + dice_weight * soft_dice(y_true, y_pred)


def decoder_block(x, skip, filters: int, name: str):
    """Upsample ``x`` 2x, concatenate ``skip``, then two conv 3x3 - batch norm - ReLU."""
    import keras

    x = keras.layers.UpSampling2D(2, name=f"{name}_upsample")(x)
    x = keras.layers.Concatenate(name=f"{name}_concat")([x, skip])
    for part in ("a", "b"):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False,
                                name=f"{name}{part}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"{name}{part}_bn")(x)
        x = keras.layers.ReLU(name=f"{name}{part}_relu")(x)
    return x


def dice_per_class_on_defects(prob: np.ndarray, truth: np.ndarray,
                              threshold: float = 0.5) -> np.ndarray:
    """Mean Dice per class over the (image, class) pairs whose true mask is not empty."""
    pred, true = np.asarray(prob) > threshold, np.asarray(truth) > 0.5
    inter = (pred & true).sum(axis=(1, 2))
    total = pred.sum(axis=(1, 2)) + true.sum(axis=(1, 2))
    dice = np.where(total == 0, 1.0, 2.0 * inter / np.maximum(total, 1))
    has = true.any(axis=(1, 2))
    return np.array([dice[has[:, c], c].mean() if has[:, c].any() else np.nan
                     for c in range(true.shape[-1])])


def competition_score(pred_masks: np.ndarray, true_masks: np.ndarray) -> float:
    """Mean Dice over every (image, class) pair of ``(N, H, W, C)`` arrays; 1 where both empty."""
    pred, true = np.asarray(pred_masks) != 0, np.asarray(true_masks) != 0
    if pred.shape != true.shape:
        raise ValueError(f"masks of different shapes: {pred.shape} and {true.shape}")
    inter = (pred & true).sum(axis=(1, 2))
    total = pred.sum(axis=(1, 2)) + true.sum(axis=(1, 2))
    return float(np.where(total == 0, 1.0, 2.0 * inter / np.maximum(total, 1)).mean())


def apply_min_area(masks: np.ndarray, min_area: list[int]) -> np.ndarray:
    """Empty channel ``c`` of ``(H, W, C)`` masks where it has fewer than ``min_area[c]`` pixels."""
    out = (np.asarray(masks) != 0).astype(np.uint8)
    areas = out.sum(axis=(0, 1))
    out[..., areas < np.asarray(min_area)] = 0
    return out


def gate_masks(masks: np.ndarray, gate_prob: np.ndarray,
               label_thresholds: list[float]) -> np.ndarray:
    """Empty channel ``c`` where the classifier's probability is below ``label_thresholds[c]``."""
    out = (np.asarray(masks) != 0).astype(np.uint8)
    prob = np.broadcast_to(np.asarray(gate_prob, dtype=np.float64).ravel(), (out.shape[-1],))
    out[..., prob < np.asarray(label_thresholds)] = 0
    return out


def hflip_tta(predict: Callable[[np.ndarray], np.ndarray], batch: np.ndarray) -> np.ndarray:
    """Mean of ``predict(batch)`` and the left-right flipped batch's prediction, flipped back."""
    batch = np.asarray(batch)
    plain = np.asarray(predict(batch), dtype=np.float64)
    flipped = np.flip(np.asarray(predict(np.flip(batch, axis=2)), dtype=np.float64), axis=2)
    return (plain + flipped) / 2


def max_abs_difference(reference: np.ndarray, other: np.ndarray) -> float:
    """``max |reference - other|``; the shapes must match."""
    reference, other = np.asarray(reference, np.float64), np.asarray(other, np.float64)
    if reference.shape != other.shape:
        raise ValueError(f"outputs differ in shape: {reference.shape} vs {other.shape}")
    return float(np.abs(reference - other).max(initial=0.0))


def dice_agreement(reference: np.ndarray, other: np.ndarray, threshold: float = 0.5) -> float:
    """Dice of the masks ``reference >= threshold`` and ``other >= threshold``; 1 if both empty."""
    reference, other = np.asarray(reference), np.asarray(other)
    if reference.shape != other.shape:
        raise ValueError(f"outputs differ in shape: {reference.shape} vs {other.shape}")
    a, b = reference >= threshold, other >= threshold
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def latency_percentiles(seconds: np.ndarray, percentiles: tuple[float, ...] = (50, 95)) -> dict:
    """``{p: the p-th percentile of seconds, in milliseconds}``."""
    seconds = np.asarray(seconds, dtype=np.float64)
    if seconds.size == 0:
        raise ValueError("latency_percentiles needs at least one timed call")
    return {p: float(1000.0 * np.percentile(seconds, p)) for p in percentiles}


def throughput(batch_size: int, seconds: np.ndarray) -> float:
    """Images per second: ``batch_size * calls / total seconds``."""
    seconds = np.asarray(seconds, dtype=np.float64)
    if batch_size < 1 or seconds.size == 0 or seconds.sum() <= 0:
        raise ValueError("throughput needs batch_size >= 1 and timed calls with positive time")
    return float(batch_size * seconds.size / seconds.sum())


CHAPTERS: dict[str, tuple[str, dict[str, str | Callable]]] = {
    "ch01": ("ch01_data_and_rle", {
        "decode_rle": "steel_keras.rle:decode_rle",
        "encode_rle": "steel_keras.rle:encode_rle",
        "mask_area_from_rle": "steel_keras.data.dataset:rle_area",
        "read_long_table": "steel_keras.data.annotations:read_annotations",
        "defect_free_ids": defect_free_ids,
    }),
    "ch02": ("ch02_eda", {
        "per_image_table": per_image_table,
        "class_balance": class_balance,
        "classes_per_image": classes_per_image,
        "empty_pair_share": empty_pair_share,
    }),
    "ch03": ("ch03_classifier", {
        "majority_accuracy": majority_accuracy,
        "classifier_head": classifier_head,
        "build_small_cnn": build_small_cnn,
        "roc_auc_by_ranks": "steel_keras.metrics.classification:roc_auc",
        "threshold_for_recall": threshold_for_recall,
    }),
    "ch04": ("ch04_segmentation", {
        "soft_dice_loss": "steel_keras.losses:soft_dice",
        "bce_dice_loss": bce_dice_loss,
        "decoder_block": decoder_block,
        "dice_per_class_on_defects": dice_per_class_on_defects,
    }),
    "ch05": ("ch05_two_stage_pipeline", {
        "pair_dice": "steel_keras.metrics.competition:dice",
        "competition_score": competition_score,
        "remove_small_components": "steel_keras.pipeline:remove_small_components",
        "apply_min_area": apply_min_area,
        "gate_masks": gate_masks,
        "hflip_tta": hflip_tta,
    }),
    "ch06": ("ch06_deployment", {
        "max_abs_difference": max_abs_difference,
        "dice_agreement": dice_agreement,
        "latency_percentiles": latency_percentiles,
        "throughput": throughput,
    }),
}


def chapters() -> list[str]:
    """The chapters with exercises, in order: ``["ch01", "ch02", ...]``."""
    return sorted(CHAPTERS)


def module_name(chapter: str) -> str:
    """The exercise module of a chapter: ``"ch01"`` -> ``"ch01_data_and_rle"``."""
    if chapter not in CHAPTERS:
        raise KeyError(f"no exercises for chapter {chapter!r}; chapters with exercises: "
                       f"{', '.join(chapters())}")
    return CHAPTERS[chapter][0]


def resolve(reference: str | Callable) -> Callable:
    """The function a registry entry names (``"pkg.module:function"``) or the function itself."""
    if callable(reference):
        return reference
    module, _, attr = reference.partition(":")
    return getattr(importlib.import_module(module), attr)


def solutions_for(chapter: str) -> dict[str, Callable]:
    """``{exercise function name: reference function}`` of a chapter (``"ch01"``)."""
    module_name(chapter)
    return {name: resolve(ref) for name, ref in CHAPTERS[chapter][1].items()}
