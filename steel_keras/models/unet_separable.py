"""The keras.io "U-Net-like" segmenter: separable convolutions, residual shortcuts, no backbone.

After François Chollet's Oxford-pets example (keras-io, `oxford_pets_image_segmentation.py`),
with every layer named and a sigmoid head for multi-label masks. Three down blocks and four up
blocks on a stride-2 stem: 16x downsampling, so height and width must be multiples of 16; it
is fully convolutional, so `(None, None, 1)` works too (train on crops, predict full size).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from steel_keras.errors import ConfigError
from steel_keras.models._inputs import BN_MOMENTUM, check_input_shape, standardize_image

DOWN_FILTERS = (64, 128, 256)
UP_FILTERS = (256, 128, 64, 32)
SIZE_MULTIPLE = 16


def build_unet_separable(
    input_shape: Sequence[int | None] = (128, 800, 1),
    classes: int = 4,
    activation: str = "sigmoid",
    width: float = 1.0,
) -> keras.Model:
    """Build the keras.io-style separable-conv U-Net (about 2 M parameters at width 1).

    Args:
        input_shape: tuple. `(height, width, 1)`, height and width multiples of 16 or
            `None`. Defaults to `(128, 800, 1)`.
        classes: int. Output channels: 4 for multi-label masks, 1 for a per-class model.
            Defaults to `4`.
        activation: str. Activation of the output layer. Defaults to `"sigmoid"`.
        width: float. Multiplies every layer's number of filters (keras.io's model is 1.0;
            0.5 has about a quarter of the weights and of the compute, for CPU runs).
            Defaults to `1.0`.

    Returns:
        A `keras.Model` named `unet_separable`, masks `(B, H, W, classes)` from the layer
        `masks`.

    Example:

    >>> build_unet_separable((32, 160, 1), classes=1).output_shape
    (None, 32, 160, 1)
    """
    shape = check_input_shape(input_shape, model="unet_separable", multiple=SIZE_MULTIPLE)
    image = keras.Input(shape=shape, name="image")
    x = standardize_image(image)
    if not 0 < width <= 4:
        raise ConfigError(f"unet_separable width must be in (0, 4], got {width!r}")

    def scaled(filters: int) -> int:
        return max(4, round(filters * width))

    x = layers.Conv2D(scaled(32), 3, strides=2, padding="same", name="stem_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="stem_bn")(x)
    x = layers.Activation("relu", name="stem_relu")(x)
    for filters in DOWN_FILTERS:
        x = _down_block(x, scaled(filters))
    for filters in UP_FILTERS:
        x = _up_block(x, scaled(filters))
    masks = layers.Conv2D(
        classes, 3, padding="same", activation=activation, dtype="float32", name="masks"
    )(x)
    return keras.Model(image, masks, name="unet_separable")


def _down_block(x, filters: int):
    """Two separable convs and a max-pool, plus a strided 1x1 conv shortcut."""
    name = f"down{filters}"
    shortcut = x
    for i in (1, 2):
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
        x = layers.SeparableConv2D(filters, 3, padding="same", name=f"{name}_sepconv{i}")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn{i}")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"{name}_pool")(x)
    shortcut = layers.Conv2D(filters, 1, strides=2, padding="same", name=f"{name}_shortcut")(
        shortcut
    )
    return layers.Add(name=f"{name}_add")([x, shortcut])


def _up_block(x, filters: int):
    """Two transposed convs and a 2x upsampling, plus an upsampled 1x1 conv shortcut."""
    name = f"up{filters}"
    shortcut = x
    for i in (1, 2):
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
        x = layers.Conv2DTranspose(filters, 3, padding="same", name=f"{name}_deconv{i}")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn{i}")(x)
    x = layers.UpSampling2D(2, name=f"{name}_upsample")(x)
    shortcut = layers.UpSampling2D(2, name=f"{name}_shortcut_upsample")(shortcut)
    shortcut = layers.Conv2D(filters, 1, padding="same", name=f"{name}_shortcut")(shortcut)
    return layers.Add(name=f"{name}_add")([x, shortcut])
