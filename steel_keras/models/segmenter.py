"""Segmenters: `build_segmenter` for every architecture, and the names each one accepts.

- `"unet"`, `"fpn"`, `"linknet"`: segmentation-models (qubvel) on any of its backbones that
  build and save on Keras 3 (`list_backbones(arch)`);
- `"unet_xception"`: a U-Net on `keras.applications.Xception` (`unet_xception.py`);
- `"unet_separable"`: the keras.io separable-conv U-Net, no backbone (`unet_separable.py`).

Multi-label mode is one model with 4 sigmoid channels (`classes=4`); per-class mode is one
single-channel model per defect class (`classes=1`). Every model takes grayscale images
`(B, H, W, 1)` in `[0, 1]` and ends in a float32 layer named `masks`.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import segmentation_models as sm
from classification_models.models import _common_blocks

from steel_keras.errors import ConfigError
from steel_keras.models._inputs import check_input_shape, gray_to_rgb, preprocessing_layer
from steel_keras.models.unet_separable import SIZE_MULTIPLE, build_unet_separable
from steel_keras.models.unet_xception import MIN_SIZE as XCEPTION_MIN_SIZE
from steel_keras.models.unet_xception import build_unet_xception

SM_ARCHITECTURES = {"unet": sm.Unet, "fpn": sm.FPN, "linknet": sm.Linknet}
DEFAULT_BACKBONES = {
    "unet": "resnet18",
    "fpn": "resnet18",
    "linknet": "resnet18",
    "unet_xception": "xception",
    "unet_separable": None,
}
# Why some segmentation-models backbones are left out on Keras 3.
UNSUPPORTED_BACKBONES = {
    "densenet121": "layer names with '/' are rejected by Keras 3",
    "densenet169": "layer names with '/' are rejected by Keras 3",
    "densenet201": "layer names with '/' are rejected by Keras 3",
    "inceptionresnetv2": "a Python lambda inside that Keras refuses to load from .keras",
}
SM_SIZE_MULTIPLE = 32
_SM_MIN_SIZE = {"inceptionv3": 96}
# Their graphs need a known height and width: FPN's bilinear upsampling cannot resize a
# symbolic shape, the Xception U-Net crops each decoder stage to its skip's size.
FIXED_SIZE = ("fpn", "unet_xception")

# SE-ResNet(X)t and ResNeXt encoders call these functions through `Lambda` layers; Keras saves
# them by name, so they must be known by name when a `.keras` file is loaded.
keras.saving.get_custom_objects().update(
    {"expand_dims": _common_blocks.expand_dims, "slice_tensor": _common_blocks.slice_tensor}
)


def list_segmenters() -> tuple[str, ...]:
    """The architecture names `build_segmenter` accepts."""
    return tuple(DEFAULT_BACKBONES)


def list_backbones(arch: str) -> tuple[str, ...]:
    """The backbones an architecture accepts (`()` for `unet_separable`, which has none).

    Example:

    >>> list_backbones("unet_xception")
    ('xception',)
    """
    _check_arch(arch)
    if arch in SM_ARCHITECTURES:
        names = sm.get_available_backbone_names()
        return tuple(name for name in names if name not in UNSUPPORTED_BACKBONES)
    return () if DEFAULT_BACKBONES[arch] is None else (DEFAULT_BACKBONES[arch],)


def needs_fixed_size(arch: str) -> bool:
    """Whether `arch` must be built for one height and width (no `None` in `input_shape`).

    Such a model trains on crops when built at the crop size; its weights do not depend on the
    size, so a model built at the full size takes them over (`set_weights`).

    Example:

    >>> needs_fixed_size("fpn"), needs_fixed_size("unet")
    (True, False)
    """
    _check_arch(arch)
    return arch in FIXED_SIZE


def check_segmenter(
    arch: str,
    backbone: str | None = None,
    input_shape: Sequence[int | None] = (128, 800, 1),
    encoder_weights: str | None = None,
    width: float = 1.0,
) -> tuple[int | None, int | None, int]:
    """Check what `build_segmenter` would be given, without building anything.

    Returns:
        The checked `input_shape` as a tuple.

    Raises:
        ConfigError: what `build_segmenter` raises for these arguments.

    Example:

    >>> check_segmenter("fpn", "resnet18", (64, 96, 1))
    (64, 96, 1)
    """
    _check_arch(arch)
    backbone = _check_backbone(arch, backbone)
    if encoder_weights not in (None, "imagenet"):
        raise ConfigError(f"encoder_weights must be None or 'imagenet', got {encoder_weights!r}")
    if arch == "unet_separable" and encoder_weights:
        raise ConfigError("unet_separable has no pretrained encoder: use encoder_weights=None")
    if arch != "unet_separable" and width != 1.0:
        raise ConfigError(f"width applies to unet_separable only, not to {arch!r}")
    if arch == "unet_separable":
        rule = {"model": arch, "multiple": SIZE_MULTIPLE}
    elif arch == "unet_xception":
        rule = {"model": arch, "min_size": XCEPTION_MIN_SIZE}
    else:
        rule = {
            "model": f"{arch} on {backbone}",
            "multiple": SM_SIZE_MULTIPLE,
            "min_size": _SM_MIN_SIZE.get(backbone, SM_SIZE_MULTIPLE),
        }
    return check_input_shape(input_shape, fixed=needs_fixed_size(arch), **rule)


def build_segmenter(
    arch: str = "unet",
    backbone: str | None = None,
    input_shape: Sequence[int | None] = (128, 800, 1),
    classes: int = 4,
    encoder_weights: str | None = None,
    activation: str = "sigmoid",
    width: float = 1.0,
) -> keras.Model:
    """Build a segmenter for grayscale images in `[0, 1]`.

    Args:
        arch: str. One of `list_segmenters()`. Defaults to `"unet"`.
        backbone: str or None. One of `list_backbones(arch)`; `None` picks the
            architecture's default (`"resnet18"` for segmentation-models, `"xception"` for
            `unet_xception`, none for `unet_separable`). Defaults to `None`.
        input_shape: tuple. `(height, width, 1)`. Unet and Linknet: multiples of 32 or
            `None`; FPN: fixed multiples of 32; `unet_xception`: fixed, at least 71;
            `unet_separable`: multiples of 16 or `None`. Defaults to `(128, 800, 1)`.
        classes: int. 4 for a multi-label model, 1 for a per-class model. Defaults to `4`.
        encoder_weights: str or None. `"imagenet"` (downloaded on first use) or `None`.
            Defaults to `None`.
        activation: str. Activation of the `masks` layer. Defaults to `"sigmoid"`.
        width: float. `unet_separable` only: multiplies its numbers of filters (0.5 for
            quick CPU runs). Defaults to `1.0`.

    Returns:
        A `keras.Model` named `{arch}_{backbone}` (or `unet_separable`) that maps
        `(B, H, W, 1)` images to `(B, H, W, classes)` masks.

    Raises:
        ConfigError: for an unknown architecture or backbone, weights the model cannot
            load, or an image size it cannot take (the message says which sizes work).

    Example:

    >>> model = build_segmenter("unet", "resnet18", input_shape=(64, 128, 1), classes=1)
    >>> model.output_shape
    (None, 64, 128, 1)
    """
    check_segmenter(arch, backbone, input_shape, encoder_weights, width)
    backbone = _check_backbone(arch, backbone)
    if arch == "unet_separable":
        return build_unet_separable(input_shape, classes, activation, width=width)
    if arch == "unet_xception":
        return build_unet_xception(input_shape, classes, encoder_weights, activation)
    return _build_sm(arch, backbone, input_shape, classes, encoder_weights, activation)


def _check_arch(arch: str) -> None:
    if arch not in DEFAULT_BACKBONES:
        raise ConfigError(
            f"unknown segmenter {arch!r}: choose one of {', '.join(list_segmenters())}"
        )


def _check_backbone(arch: str, backbone: str | None) -> str | None:
    if backbone is None:
        return DEFAULT_BACKBONES[arch]
    valid = list_backbones(arch)
    if not valid:
        raise ConfigError(f"{arch} has no backbone: leave backbone unset, got {backbone!r}")
    if backbone in UNSUPPORTED_BACKBONES and arch in SM_ARCHITECTURES:
        reason = UNSUPPORTED_BACKBONES[backbone]
        raise ConfigError(f"backbone {backbone!r} does not work here ({reason}); use e.g. resnet34")
    if backbone not in valid:
        raise ConfigError(
            f"unknown backbone {backbone!r} for {arch}: choose one of {', '.join(valid)}"
        )
    return backbone


def _build_sm(
    arch: str,
    backbone: str,
    input_shape: Sequence[int | None],
    classes: int,
    encoder_weights: str | None,
    activation: str,
) -> keras.Model:
    """A segmentation-models network, nested between the shared input layers and `masks`."""
    shape = check_input_shape(
        input_shape,
        model=f"{arch} on {backbone}",
        multiple=SM_SIZE_MULTIPLE,
        min_size=_SM_MIN_SIZE.get(backbone, SM_SIZE_MULTIPLE),
        fixed=needs_fixed_size(arch),
    )
    network = SM_ARCHITECTURES[arch](
        backbone,
        input_shape=(shape[0], shape[1], 3),
        classes=classes,
        activation="linear",
        encoder_weights=encoder_weights,
    )
    network = keras.Model(network.input, network.output, name=f"sm_{arch}_{backbone}")
    image = keras.Input(shape=shape, name="image")
    x = gray_to_rgb(image)
    x = preprocessing_layer(sm.get_preprocessing(backbone))(x)
    x = network(x)
    masks = keras.layers.Activation(activation, dtype="float32", name="masks")(x)
    return keras.Model(image, masks, name=f"{arch}_{backbone}")
