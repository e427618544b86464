"""The input side every model shares: shape checks, grayscale to RGB, backbone preprocessing.

Models take what the data pipelines yield: float32 images `(B, H, W, 1)` in `[0, 1]`. Pretrained
backbones want three channels in their own range, so the models repeat the channel and rescale
inside the graph (named layers `gray_to_rgb` and `backbone_preprocessing`). The rescaling is
applied whatever the encoder weights, so a model has one input contract and the ImageNet
path is the same graph that the tests build with random weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import numpy as np

from steel_keras.errors import ConfigError

InputShape = tuple[int | None, int | None, int]


def check_input_shape(
    input_shape: Sequence[int | None],
    *,
    model: str,
    multiple: int = 1,
    min_size: int = 1,
    fixed: bool = False,
) -> InputShape:
    """Return `input_shape` as a tuple, or raise `ConfigError` saying which sizes work.

    Args:
        input_shape: sequence. `(height, width, channels)`; `None` for a free height or width.
        model: str. The model's name, for the message.
        multiple: int. Height and width must be multiples of this. Defaults to `1`.
        min_size: int. Smallest height and width. Defaults to `1`.
        fixed: bool. Whether height and width must be given. Defaults to `False`.
    """
    shape = tuple(input_shape)
    rule = _size_rule(multiple, min_size, fixed)
    if len(shape) != 3 or shape[2] != 1:
        raise ConfigError(
            f"{model}: input_shape must be (height, width, 1) for grayscale images, got {shape}"
        )
    for size in shape[:2]:
        if size is None and fixed:
            raise ConfigError(f"{model} needs a fixed image size: {rule}; got {shape[:2]}")
        if size is not None and (size < min_size or size % multiple):
            raise ConfigError(f"{model} cannot take images of {shape[0]} x {shape[1]}: {rule}")
    return shape


def _size_rule(multiple: int, min_size: int, fixed: bool) -> str:
    parts = [f"multiples of {multiple}"] if multiple > 1 else []
    parts += [f"at least {min_size}"] if min_size > max(multiple, 1) else []
    rule = "height and width " + (" and ".join(parts) if parts else "of any size")
    return rule + ("" if fixed else " (or None)") + ", e.g. 128 x 800 or 256 x 1600"


def gray_to_rgb(image: keras.KerasTensor) -> keras.KerasTensor:
    """Repeat the single channel three times (a named `Concatenate`, exportable to ONNX)."""
    return keras.layers.Concatenate(axis=-1, name="gray_to_rgb")([image, image, image])


def preprocessing_layer(preprocess_input: Callable[[np.ndarray], np.ndarray]) -> keras.Layer:
    """A `Rescaling` layer that maps `[0, 1]` images to what `preprocess_input` produces.

    Every backbone's `preprocess_input` is affine per channel on `[0, 255]` RGB images
    ("tf": to `[-1, 1]`, "torch": ImageNet mean and std, "caffe": BGR minus the mean,
    or nothing), so evaluating it at black and white gives its scale and offset per channel.
    The images are gray, so the channel order of "caffe" does not matter.
    """
    black_white = np.array([[[[0.0] * 3, [255.0] * 3]]], dtype="float32")
    mapped = np.asarray(preprocess_input(black_white.copy()), dtype="float64")[0, 0]
    offset, scale = mapped[0], mapped[1] - mapped[0]
    return keras.layers.Rescaling(
        scale=[float(s) for s in scale],
        offset=[float(o) for o in offset],
        name="backbone_preprocessing",
    )


# Models trained from scratch here run for a few hundred steps: batch normalisation's default
# momentum (0.99) leaves its moving statistics a fifth of their initial values after 150 steps,
# so inference normalised by the wrong variance and a classifier that trained to AUC 0.8
# predicted at chance on validation. 0.9 settles within about 50 steps.
BN_MOMENTUM = 0.9


def standardize_image(image, name: str = "image_standardize"):
    """Per-image standardisation: each image to zero mean and unit variance.

    Steel frames differ in overall brightness far more than a defect differs from its
    surroundings (grain noise is a few percent of the range). Standardising each image makes a
    from-scratch network see texture and defects at the scale of its weights. Built from
    `keras.layers.LayerNormalization` over height, width and channels (no learned parameters),
    so a saved model needs no custom code and exports to ONNX.
    """
    return keras.layers.LayerNormalization(
        axis=(1, 2, 3), epsilon=1e-6, center=False, scale=False, dtype="float32", name=name
    )(image)
