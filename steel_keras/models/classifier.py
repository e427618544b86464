"""The defect classifier: does this image show a defect, and (optionally) of which classes.

The first stage of the two-stage pipeline: a `keras.applications` backbone (Xception by
default, as in the course) or a small CNN for quick CPU runs, global average pooling and
sigmoid heads. About half of the Severstal images are defect-free, so a good classifier saves
the segmenters from predicting false positives on clean steel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import keras

from steel_keras.constants import NUM_CLASSES
from steel_keras.errors import ConfigError
from steel_keras.models._inputs import (
    BN_MOMENTUM,
    check_input_shape,
    gray_to_rgb,
    preprocessing_layer,
    standardize_image,
)

apps = keras.applications


class _Backbone(NamedTuple):
    build: Callable[..., keras.Model]
    preprocess_input: Callable
    min_size: int


_BACKBONES: dict[str, _Backbone] = {
    "xception": _Backbone(apps.Xception, apps.xception.preprocess_input, 71),
    "efficientnetb0": _Backbone(apps.EfficientNetB0, apps.efficientnet.preprocess_input, 32),
    "efficientnetb1": _Backbone(apps.EfficientNetB1, apps.efficientnet.preprocess_input, 32),
    "efficientnetb3": _Backbone(apps.EfficientNetB3, apps.efficientnet.preprocess_input, 32),
    "mobilenetv2": _Backbone(apps.MobileNetV2, apps.mobilenet_v2.preprocess_input, 32),
    "resnet50": _Backbone(apps.ResNet50, apps.resnet50.preprocess_input, 32),
}
SMALL_CNN = "small_cnn"
_SMALL_CNN_FILTERS = (8, 16, 32, 64, 128)


def list_classifiers() -> tuple[str, ...]:
    """The backbone names `build_classifier` accepts."""
    return (*_BACKBONES, SMALL_CNN)


def build_classifier(
    backbone: str = "xception",
    input_shape: Sequence[int | None] = (128, 800, 1),
    encoder_weights: str | None = None,
    multilabel: bool = False,
    dropout: float = 0.2,
) -> keras.Model:
    """Build the defect classifier for grayscale images in `[0, 1]`.

    Args:
        backbone: str. One of `list_classifiers()`: `"xception"`, `"efficientnetb0"`,
            `"efficientnetb1"`, `"efficientnetb3"`, `"mobilenetv2"`, `"resnet50"` (from
            `keras.applications`) or `"small_cnn"` (five conv blocks, about 0.1 s a
            training step at 128 x 800, batch 8, on 2 CPU cores). Defaults to `"xception"`.
            The backbones end in `classifier_head`; `small_cnn` is `build_small_cnn`'s
            network with its features pooled by their mean and their maximum.
        input_shape: tuple. `(height, width, 1)`; `None` for a free height or width.
            Xception needs at least 71 x 71, the other backbones 32 x 32. Defaults to
            `(128, 800, 1)`.
        encoder_weights: str or None. `"imagenet"` (downloaded by Keras on first use) or
            `None` for random weights. Defaults to `None`.
        multilabel: bool. Add a second output `classes`: 4 sigmoids saying which defect
            classes are present. Defaults to `False`.
        dropout: float. Dropout rate before the heads. Defaults to `0.2`.

    Returns:
        A `keras.Model` named `classifier_{backbone}`. Its output is `has_defect`, `(B, 1)`;
        with `multilabel=True` it is a dict `{"has_defect": (B, 1), "classes": (B, 4)}`.

    Raises:
        ConfigError: for an unknown backbone, unknown weights or an image size the
            backbone cannot take.

    Example:

    >>> model = build_classifier("small_cnn", input_shape=(64, 128, 1), multilabel=True)
    >>> sorted(model.output_names)
    ['classes', 'has_defect']
    """
    if backbone not in list_classifiers():
        raise ConfigError(
            f"unknown classifier backbone {backbone!r}: choose one of "
            f"{', '.join(list_classifiers())}"
        )
    _check_encoder_weights(backbone, encoder_weights)
    min_size = _BACKBONES[backbone].min_size if backbone in _BACKBONES else 16
    shape = check_input_shape(input_shape, model=f"classifier {backbone!r}", min_size=min_size)
    image = keras.Input(shape=shape, name="image")
    if backbone == SMALL_CNN:
        has_defect = _small_cnn_head(_small_cnn_features(image), dropout)
    else:
        features = _application_features(image, backbone, shape, encoder_weights)
        has_defect = classifier_head(features, dropout)
    outputs = _with_classes_head(image, has_defect) if multilabel else has_defect
    return keras.Model(image, outputs, name=f"classifier_{backbone}")


def classifier_head(features, dropout: float = 0.2):
    """The classifier's head: global average pooling, dropout, one sigmoid unit.

    Args:
        features: KerasTensor. A feature map `(batch, height, width, channels)`.
        dropout: float. The dropout rate. Defaults to `0.2`.

    Returns:
        The KerasTensor `(batch, 1)` of P(defect), from the layers `pool`, `head_dropout` and
        `has_defect` (float32, so that the sigmoid stays stable under mixed precision).

    Example:

    >>> inputs = keras.Input((4, 6, 16))
    >>> keras.Model(inputs, classifier_head(inputs)).output_shape
    (None, 1)
    """
    x = keras.layers.GlobalAveragePooling2D(name="pool")(features)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    return keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="has_defect")(x)


def build_small_cnn(input_shape: Sequence[int | None]) -> keras.Model:
    """The course's small CNN: per-image standardisation, five conv blocks, `classifier_head`.

    Each block is a 3 x 3 convolution with stride 2 and no bias, batch normalisation with
    momentum 0.9 and a ReLU, with 8, 16, 32, 64 and 128 filters: 99,113 weights whatever the
    image size. `build_classifier("small_cnn")` has the same blocks and pools their output by
    its mean and its maximum (128 more weights in the head).

    Args:
        input_shape: tuple. `(height, width, 1)`.

    Returns:
        A `keras.Model` named `small_cnn_avg_pool` from images to `(batch, 1)` probabilities.

    Example:

    >>> build_small_cnn((32, 96, 1)).count_params()
    99113
    """
    image = keras.Input(shape=input_shape, name="image")
    outputs = classifier_head(_small_cnn_features(image))
    return keras.Model(image, outputs, name="small_cnn_avg_pool")


def _small_cnn_head(features, dropout: float):
    """`classifier_head` with the features pooled by their mean and their maximum."""
    # A defect is a small local anomaly: the mean over the whole sheet dilutes it (a
    # global-average-pooled small CNN stayed at chance on the synthetic data), the maximum
    # keeps the strongest response; the mean still says how much of it there is.
    pooled = keras.layers.Concatenate(name="pool")(
        [
            keras.layers.GlobalAveragePooling2D(name="pool_avg")(features),
            keras.layers.GlobalMaxPooling2D(name="pool_max")(features),
        ]
    )
    x = keras.layers.Dropout(dropout, name="head_dropout")(pooled)
    return keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="has_defect")(x)


def _with_classes_head(image, has_defect) -> dict:
    """`{"has_defect", "classes"}`: 4 more sigmoids on the head's dropped-out features."""
    dropped = keras.Model(image, has_defect).get_layer("head_dropout").output
    # float32 heads keep the sigmoid stable under a mixed-precision policy.
    classes = keras.layers.Dense(NUM_CLASSES, activation="sigmoid", dtype="float32", name="classes")
    return {"has_defect": has_defect, "classes": classes(dropped)}


def _check_encoder_weights(backbone: str, encoder_weights: str | None) -> None:
    if encoder_weights not in (None, "imagenet"):
        raise ConfigError(f"encoder_weights must be None or 'imagenet', got {encoder_weights!r}")
    if encoder_weights and backbone == SMALL_CNN:
        raise ConfigError("small_cnn has no pretrained weights: use encoder_weights=None")


def _application_features(image, backbone: str, shape, encoder_weights: str | None):
    spec = _BACKBONES[backbone]
    x = gray_to_rgb(image)
    x = preprocessing_layer(spec.preprocess_input)(x)
    encoder = spec.build(
        include_top=False,
        weights=encoder_weights,
        input_shape=(shape[0], shape[1], 3),
        name=f"{backbone}_encoder",
    )
    return encoder(x)


def _small_cnn_features(image):
    """Per-image standardisation, then conv blocks that halve the size each time: conv 3x3
    stride 2, batch norm, ReLU."""
    x = standardize_image(image)
    for i, filters in enumerate(_SMALL_CNN_FILTERS, start=1):
        x = keras.layers.Conv2D(
            filters, 3, strides=2, padding="same", use_bias=False, name=f"block{i}_conv"
        )(x)
        x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"block{i}_bn")(x)
        x = keras.layers.ReLU(name=f"block{i}_relu")(x)
    return x
