"""Metrics: the competition's mean Dice (numpy, for evaluation) and Dice for Keras training.

``steel_keras.metrics.competition`` (RLE tables and files) needs only numpy and pandas, so
scoring a submission does not import TensorFlow; ``steel_keras.metrics.masks`` (mask arrays) and
``steel_keras.metrics.classification`` need numpy alone; the Keras metrics in
``steel_keras.metrics.keras_metrics`` load on first use.
"""

from importlib import import_module

_LAZY = {
    # numpy / pandas side (evaluation, `steel-keras score`)
    "competition_dice": "competition",
    "ScoreResult": "competition",
    "score_files": "competition",
    # numpy alone: Dice on mask arrays
    "competition_score": "masks",
    "dice": "masks",
    "dice_from_counts": "masks",
    "dice_per_class_on_defects": "masks",
    # Keras side (training)
    "DicePerClass": "keras_metrics",
    "dice_coefficient": "keras_metrics",
}


def __getattr__(name: str):
    if name in _LAZY:
        module = import_module(f"steel_keras.metrics.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'steel_keras.metrics' has no attribute {name!r}")


__all__ = sorted(_LAZY)
