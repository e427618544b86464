"""A U-Net on a `keras.applications.Xception` encoder, built from Keras layers only.

Xception's stem uses valid padding, so its feature maps have odd sizes (a 128 x 800 image gives
61 x 397, 31 x 199, 16 x 100, 8 x 50 and 4 x 25). After each 2x upsampling the decoder crops
or zero-pads to the size of the skip it joins (`Cropping2D` / `ZeroPadding2D`, which export to
ONNX; `layers.Resizing` converts but ONNX Runtime then rejects the file), and the last stage
matches the input size. Each stage with a skip is a `decoder_block`. The crops and pads are
fixed when the model is built, so the model needs a fixed height and width: any size of at
least 71 x 71 (Xception's minimum) works.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from steel_keras.models._inputs import check_input_shape, gray_to_rgb, preprocessing_layer

# Encoder features from deepest to shallowest: strides 32, 16, 8, 4, 2.
XCEPTION_FEATURES = (
    "block14_sepconv2_act",
    "block13_sepconv2_bn",
    "block4_sepconv2_bn",
    "block3_sepconv2_bn",
    "block2_sepconv2_bn",
)
DECODER_FILTERS = (256, 128, 64, 32, 16)
MIN_SIZE = 71


def build_unet_xception(
    input_shape: Sequence[int | None] = (128, 800, 1),
    classes: int = 4,
    encoder_weights: str | None = None,
    activation: str = "sigmoid",
) -> keras.Model:
    """Build a U-Net whose encoder is `keras.applications.Xception`.

    Args:
        input_shape: tuple. `(height, width, 1)` with fixed height and width of at least 71.
            Defaults to `(128, 800, 1)`.
        classes: int. Output channels: 4 for multi-label masks, 1 for a per-class model.
            Defaults to `4`.
        encoder_weights: str or None. `"imagenet"` (downloaded by Keras on first use) or
            `None`. Defaults to `None`.
        activation: str. Activation of the output layer. Defaults to `"sigmoid"`.

    Returns:
        A `keras.Model` named `unet_xception`; its encoder is the nested model
        `xception_encoder`, its masks `(B, H, W, classes)` come from the layer `masks`.

    Example:

    >>> build_unet_xception((96, 160, 1), classes=1).output_shape
    (None, 96, 160, 1)
    """
    shape = check_input_shape(input_shape, model="unet_xception", min_size=MIN_SIZE, fixed=True)
    image = keras.Input(shape=shape, name="image")
    x = gray_to_rgb(image)
    x = preprocessing_layer(keras.applications.xception.preprocess_input)(x)
    x, *skips = _xception_encoder(shape, encoder_weights)(x)
    for stage, (skip, filters) in enumerate(zip(skips, DECODER_FILTERS, strict=False), 1):
        x = decoder_block(x, skip, filters, f"decoder_stage{stage}")
    # The last stage has no skip: the input's size is all there is to match.
    name = f"decoder_stage{len(skips) + 1}"
    x = layers.UpSampling2D(2, name=f"{name}_upsample")(x)
    x = _conv_bn_relu_twice(match_size(x, shape[:2], name), DECODER_FILTERS[-1], name)
    masks = layers.Conv2D(
        classes, 3, padding="same", activation=activation, dtype="float32", name="masks"
    )(x)
    return keras.Model(image, masks, name="unet_xception")


def _xception_encoder(shape, encoder_weights: str | None) -> keras.Model:
    """Xception as a nested model returning the features of `XCEPTION_FEATURES`."""
    xception = keras.applications.Xception(
        include_top=False, weights=encoder_weights, input_shape=(shape[0], shape[1], 3)
    )
    features = [xception.get_layer(name).output for name in XCEPTION_FEATURES]
    return keras.Model(xception.input, features, name="xception_encoder")


def decoder_block(x, skip, filters: int, name: str):
    """One U-Net decoder block: upsample `x` 2x, join the encoder's `skip`, two conv-BN-ReLU.

    Layers, in order: `{name}_upsample` (`UpSampling2D`), `{name}_crop` or `{name}_pad` only
    where the upsampled `x` and `skip` differ in size (see `match_size`), `{name}_concat`
    (`x` then `skip`), then for part `a` and `b` a 3 x 3 `Conv2D` without bias
    (`{name}{part}_conv`), `BatchNormalization` (`{name}{part}_bn`) and `ReLU`
    (`{name}{part}_relu`).

    Args:
        x: KerasTensor. `(B, h, w, channels)` from the layer below.
        skip: KerasTensor. `(B, about 2h, about 2w, skip_channels)` from the encoder, with a
            fixed height and width.
        filters: int. Filters of both convolutions.
        name: str. Prefix of the block's layer names.

    Returns:
        The KerasTensor `(B, height of skip, width of skip, filters)` of the last ReLU.

    Example:

    >>> x, skip = keras.Input((4, 6, 32)), keras.Input((8, 12, 16))
    >>> decoder_block(x, skip, 16, "decoder1").shape
    (None, 8, 12, 16)
    """
    x = layers.UpSampling2D(2, name=f"{name}_upsample")(x)
    x = match_size(x, skip.shape[1:3], name)
    x = layers.Concatenate(name=f"{name}_concat")([x, skip])
    return _conv_bn_relu_twice(x, filters, name)


def _conv_bn_relu_twice(x, filters: int, name: str):
    for part in ("a", "b"):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}{part}_conv")(x)
        x = layers.BatchNormalization(name=f"{name}{part}_bn")(x)
        x = layers.ReLU(name=f"{name}{part}_relu")(x)
    return x


def match_size(x, size: tuple[int, int], name: str):
    """Crop (`Cropping2D`) or zero-pad (`ZeroPadding2D`) `x` to `size`, centred.

    Args:
        x: KerasTensor. A feature map with a fixed height and width.
        size: tuple. The `(height, width)` wanted.
        name: str. Prefix of the layers added (`{name}_crop`, `{name}_pad`).

    Returns:
        `x` itself when it already has that size, otherwise the cropped or padded tensor.
    """
    differences = [want - have for want, have in zip(size, x.shape[1:3], strict=True)]
    crop = tuple(_split(max(-d, 0)) for d in differences)
    pad = tuple(_split(max(d, 0)) for d in differences)
    if any(sum(c) for c in crop):
        x = layers.Cropping2D(crop, name=f"{name}_crop")(x)
    if any(sum(p) for p in pad):
        x = layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
    return x


def _split(total: int) -> tuple[int, int]:
    return total // 2, total - total // 2
