"""Which library function answers which exercise: the grader's answer key is the library.

``CHAPTERS`` maps a chapter (``"ch01"``) to its exercise module's name and to
``{exercise function name: "module:function"}`` in the library. The names are imported only when
asked for, so grading chapter 01 never imports Keras. The graded tests run against these
functions for full marks, and ``steel-keras course student-copy --solutions`` copies their
source into the instructor's exercise files (renamed to the exercise's name where it differs).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

__all__ = ["CHAPTERS", "chapters", "module_name", "resolve", "solutions_for"]

CHAPTERS: dict[str, tuple[str, dict[str, str]]] = {
    "ch01": ("ch01_data_and_rle", {
        "decode_rle": "steel_keras.rle:decode_rle",
        "encode_rle": "steel_keras.rle:encode_rle",
        "mask_area_from_rle": "steel_keras.data.dataset:rle_area",
        "read_long_table": "steel_keras.data.annotations:read_annotations",
        "defect_free_ids": "steel_keras.data.dataset:defect_free_ids",
    }),
    "ch02": ("ch02_eda", {
        "per_image_table": "steel_keras.data.dataset:per_image_table",
        "class_balance": "steel_keras.eda:class_balance",
        "classes_per_image": "steel_keras.eda:classes_per_image",
        "empty_pair_share": "steel_keras.eda:empty_pair_share",
    }),
    "ch03": ("ch03_classifier", {
        "majority_accuracy": "steel_keras.metrics.classification:majority_accuracy",
        "classifier_head": "steel_keras.models.classifier:classifier_head",
        "build_small_cnn": "steel_keras.models.classifier:build_small_cnn",
        "roc_auc_by_ranks": "steel_keras.metrics.classification:roc_auc",
        "threshold_for_recall": "steel_keras.metrics.classification:threshold_for_recall",
    }),
    "ch04": ("ch04_segmentation", {
        "soft_dice_loss": "steel_keras.losses:soft_dice",
        "bce_dice_loss": "steel_keras.losses:bce_dice_loss",
        "decoder_block": "steel_keras.models.unet_xception:decoder_block",
        "dice_per_class_on_defects": "steel_keras.metrics.masks:dice_per_class_on_defects",
    }),
    "ch05": ("ch05_two_stage_pipeline", {
        "pair_dice": "steel_keras.metrics.masks:dice",
        "competition_score": "steel_keras.metrics.masks:competition_score",
        "remove_small_components": "steel_keras.pipeline:remove_small_components",
        "apply_min_area": "steel_keras.pipeline:apply_min_area",
        "gate_masks": "steel_keras.pipeline:gate_masks",
        "hflip_tta": "steel_keras.pipeline:flip_tta",
    }),
    "ch06": ("ch06_deployment", {
        "max_abs_difference": "steel_keras.deploy.parity:max_abs_difference",
        "dice_agreement": "steel_keras.deploy.parity:dice_agreement",
        "latency_percentiles": "steel_keras.deploy.benchmark:latency_percentiles",
        "throughput": "steel_keras.deploy.benchmark:throughput",
    }),
}  # fmt: skip


def chapters() -> list[str]:
    """The chapters with exercises, in order: ``["ch01", "ch02", ...]``."""
    return sorted(CHAPTERS)


def module_name(chapter: str) -> str:
    """The exercise module of a chapter: ``"ch01"`` -> ``"ch01_data_and_rle"``."""
    if chapter not in CHAPTERS:
        raise KeyError(
            f"no exercises for chapter {chapter!r}; chapters with exercises: "
            f"{', '.join(chapters())}"
        )
    return CHAPTERS[chapter][0]


def resolve(reference: str) -> Callable:
    """The library function a table entry names: ``"pkg.module:function"``."""
    module, _, attr = reference.partition(":")
    return getattr(importlib.import_module(module), attr)


def solutions_for(chapter: str) -> dict[str, Callable]:
    """``{exercise function name: reference function}`` of a chapter (``"ch01"``)."""
    module_name(chapter)
    return {name: resolve(ref) for name, ref in CHAPTERS[chapter][1].items()}
