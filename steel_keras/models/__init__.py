"""Models: the defect classifier and the segmenters, and loading them back from `.keras` files.

Importing this package registers everything a saved model may need (the losses, the Dice
metric, the functions segmentation-models' encoders call), so a saved model loads with plain
`keras.saving.load_model(path)` after `import steel_keras.models`, or with `load_model(path)`.
"""

from __future__ import annotations

import os
import zipfile

import keras

import steel_keras.losses  # noqa: F401  (registers the losses for compiled models)
import steel_keras.metrics.keras_metrics  # noqa: F401  (registers DicePerClass)
from steel_keras.errors import DataError, first_line
from steel_keras.models.classifier import (
    build_classifier,
    build_small_cnn,
    classifier_head,
    list_classifiers,
)
from steel_keras.models.segmenter import (
    build_segmenter,
    list_backbones,
    list_segmenters,
)
from steel_keras.models.unet_separable import build_unet_separable
from steel_keras.models.unet_xception import build_unet_xception, decoder_block

__all__ = [
    "build_classifier",
    "build_segmenter",
    "build_small_cnn",
    "build_unet_separable",
    "build_unet_xception",
    "classifier_head",
    "decoder_block",
    "list_backbones",
    "list_classifiers",
    "list_segmenters",
    "load_model",
]


def load_model(path: str | os.PathLike, compile: bool = True) -> keras.Model:
    """Load a `.keras` file saved from any steel-keras model, compiled or not.

    Args:
        path: str or path. The `.keras` file.
        compile: bool. Restore the optimizer, loss and metrics too. Defaults to `True`.

    Returns:
        The `keras.Model`, predicting exactly what it predicted when saved.

    Raises:
        DataError: a `.keras` file that is missing, empty or not a zip archive.

    Example:

    >>> import tempfile, pathlib
    >>> model = build_classifier("small_cnn", input_shape=(32, 64, 1))
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "classifier.keras"
    >>> model.save(path)
    >>> load_model(path).name
    'classifier_small_cnn'

    Raises:
        DataError: the file is missing, empty, cut short or otherwise damaged (one line naming
            it and what to do).
    """
    fix = "train the model again or restore the file"
    if not os.path.isfile(path):
        raise DataError(f"model file {path} does not exist; {fix}")
    # A `.keras` file is a zip archive: Keras calls an empty or cut-off one "not found".
    if str(path).endswith(".keras") and not zipfile.is_zipfile(path):
        raise DataError(f"model file {path} is empty or damaged (not a .keras zip archive); {fix}")
    try:
        return keras.saving.load_model(path, compile=compile)
    except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"model file {path} cannot be loaded ({first_line(exc)}); {fix}") from None
