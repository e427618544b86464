"""Segmentation losses for Keras training: weighted BCE, soft Dice, BCE + Dice and focal.

Every loss takes masks ``y_true`` (0 or 1) and sigmoid probabilities ``y_pred`` of the same
shape, channels last (``(B, H, W, C)`` for masks, ``(B, C)`` works too), and returns one value
per image, which Keras then averages over the batch. Every loss is registered with Keras under
the ``steel_keras`` package, so a model compiled with one saves and loads as a ``.keras`` file
once ``steel_keras.losses`` (or ``steel_keras.models``) has been imported.

``get_loss(name)`` builds one by name for recipes and the command line; ``list_losses()`` gives
the names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from steel_keras.errors import ConfigError

EPSILON = 1e-7
_SERIALIZABLE = keras.saving.register_keras_serializable(package="steel_keras")


def _spatial_axes(x) -> tuple[int, ...]:
    """Every axis but the batch axis and the channel axis (empty for ``(B, C)`` tensors)."""
    return tuple(range(1, len(x.shape) - 1))


def _normalise_pos_weight(
    pos_weight: float | Sequence[float] | None,
) -> float | list[float] | None:
    """``None``, one float, or a list of floats (JSON-friendly for ``get_config``)."""
    if pos_weight is None or isinstance(pos_weight, int | float):
        return None if pos_weight is None else float(pos_weight)
    return [float(w) for w in pos_weight]


def _check_channels(pos_weight: float | list[float] | None, y_pred) -> None:
    channels = y_pred.shape[-1]
    if isinstance(pos_weight, list) and len(pos_weight) not in (1, channels):
        raise ConfigError(
            f"pos_weight has {len(pos_weight)} values but the model predicts {channels} "
            f"channel(s): give one value per channel or a single number"
        )


def weighted_bce(y_true, y_pred, pos_weight: float | list[float] | None = None):
    """Per-image binary cross-entropy with a weight on the positive term of each channel."""
    y_pred = ops.clip(y_pred, EPSILON, 1.0 - EPSILON)
    positive = y_true * ops.log(y_pred)
    if pos_weight is not None:
        _check_channels(pos_weight, y_pred)
        positive = positive * ops.convert_to_tensor(pos_weight, dtype=y_pred.dtype)
    loss = -(positive + (1.0 - y_true) * ops.log(1.0 - y_pred))
    return ops.mean(loss, axis=tuple(range(1, len(loss.shape))))


def soft_dice(y_true, y_pred, smooth: float = 1.0, per_image: bool = True):
    """``1 - soft Dice`` per image, averaged over channels (see ``SoftDice``)."""
    if per_image:
        axes = _spatial_axes(y_pred)
        intersection = ops.sum(y_true * y_pred, axis=axes)
        total = ops.sum(y_true, axis=axes) + ops.sum(y_pred, axis=axes)
        return 1.0 - ops.mean((2.0 * intersection + smooth) / (total + smooth), axis=-1)
    axes = tuple(range(len(y_pred.shape) - 1))
    intersection = ops.sum(y_true * y_pred, axis=axes)
    total = ops.sum(y_true, axis=axes) + ops.sum(y_pred, axis=axes)
    batch_loss = 1.0 - ops.mean((2.0 * intersection + smooth) / (total + smooth))
    # One value per image, so that Keras's batch mean returns the batch loss unchanged.
    return batch_loss * ops.ones((ops.shape(y_pred)[0],), dtype=y_pred.dtype)


def bce_dice_loss(
    y_true,
    y_pred,
    bce_weight: float = 0.75,
    dice_weight: float = 0.25,
    *,
    pos_weight: float | list[float] | None = None,
    smooth: float = 1.0,
    per_image: bool = True,
):
    """``bce_weight * BCE + dice_weight * soft Dice loss``, one value per image (see ``BCEDice``).

    With the defaults, plain binary cross-entropy (probabilities clipped to
    ``[1e-7, 1 - 1e-7]``) and the per-image soft Dice loss with smoothing 1.
    """
    bce = weighted_bce(y_true, y_pred, pos_weight)
    return bce_weight * bce + dice_weight * soft_dice(y_true, y_pred, smooth, per_image)


def binary_focal(y_true, y_pred, gamma: float = 2.0, alpha: float = 0.25):
    """Per-image binary focal loss (see ``Focal``)."""
    y_pred = ops.clip(y_pred, EPSILON, 1.0 - EPSILON)
    positive = alpha * y_true * ops.power(1.0 - y_pred, gamma) * ops.log(y_pred)
    negative = (1.0 - alpha) * (1.0 - y_true) * ops.power(y_pred, gamma) * ops.log(1.0 - y_pred)
    loss = -(positive + negative)
    return ops.mean(loss, axis=tuple(range(1, len(loss.shape))))


class _SteelLoss(keras.losses.Loss):
    """Shared ``get_config``: the base fields plus the subclass's own arguments."""

    def _own_config(self) -> dict[str, Any]:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dtype": self.dtype, **self._own_config()}


@_SERIALIZABLE
class WeightedBCE(_SteelLoss):
    """Binary cross-entropy with a per-class weight on the positive (defect) pixels.

    For masks `y`, probabilities `p` (clipped to `[1e-7, 1 - 1e-7]`) and a weight `w_c` per
    channel `c`, the loss of one image is the mean over its pixels and channels of

        -(w_c * y * log(p) + (1 - y) * log(1 - p))

    which is PyTorch's `BCEWithLogitsLoss(pos_weight=...)` on probabilities. Defect pixels
    are rare, so `w_c > 1` stops the model from predicting empty masks everywhere.

    Args:
        pos_weight: float, sequence of floats or None. The weight `w_c` of each channel's
            positive term (one value per channel, or one for all). `None` means 1 (plain
            BCE). Defaults to `(2.0, 2.0, 1.0, 1.5)`, the first-place Severstal solution's
            weights for classes 1 to 4.
        name: str. The loss's name. Defaults to `"weighted_bce"`.
        reduction: str. How Keras reduces the per-image values. Defaults to
            `"sum_over_batch_size"` (the batch mean).
        dtype: str or None. The dtype of the computation. Defaults to `None` (`floatx`).

    Example:

    >>> import numpy as np
    >>> y = np.array([[[[1.0, 0.0]]]])
    >>> p = np.array([[[[0.5, 0.5]]]])
    >>> float(WeightedBCE(pos_weight=(2.0, 1.0))(y, p))  # (2 ln 2 + ln 2) / 2
    1.0397...
    """

    def __init__(
        self,
        pos_weight: float | Sequence[float] | None = (2.0, 2.0, 1.0, 1.5),
        name: str = "weighted_bce",
        reduction: str = "sum_over_batch_size",
        dtype: str | None = None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.pos_weight = _normalise_pos_weight(pos_weight)

    def call(self, y_true, y_pred):
        return weighted_bce(y_true, y_pred, self.pos_weight)

    def _own_config(self) -> dict[str, Any]:
        return {"pos_weight": self.pos_weight}


@_SERIALIZABLE
class SoftDice(_SteelLoss):
    """One minus the soft Dice coefficient, averaged over channels.

    With `per_image=True`, for image `b` and channel `c` (sums over the pixels of that image),

        D_bc = (2 * sum(y * p) + smooth) / (sum(y) + sum(p) + smooth)
        loss_b = 1 - mean_c(D_bc)

    With `per_image=False` the sums run over the whole batch, `D_c` is one number per channel
    and every image gets `1 - mean_c(D_c)`. The smoothing term makes an empty mask predicted
    empty count as a perfect match, as in the competition's metric.

    Args:
        smooth: float. Added to numerator and denominator. Defaults to `1.0`.
        per_image: bool. Dice per image (`True`) or over the whole batch (`False`).
            Defaults to `True`.
        name: str. The loss's name. Defaults to `"soft_dice"`.
        reduction: str. How Keras reduces the per-image values. Defaults to
            `"sum_over_batch_size"`.
        dtype: str or None. The dtype of the computation. Defaults to `None` (`floatx`).

    Example:

    >>> import numpy as np
    >>> y = np.array([[[[1.0], [0.0]]]])
    >>> p = np.array([[[[0.5], [0.5]]]])
    >>> float(SoftDice(smooth=1.0)(y, p))  # 1 - (2 * 0.5 + 1) / (1 + 1 + 1)
    0.3333...
    """

    def __init__(
        self,
        smooth: float = 1.0,
        per_image: bool = True,
        name: str = "soft_dice",
        reduction: str = "sum_over_batch_size",
        dtype: str | None = None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.smooth = float(smooth)
        self.per_image = bool(per_image)

    def call(self, y_true, y_pred):
        return soft_dice(y_true, y_pred, self.smooth, self.per_image)

    def _own_config(self) -> dict[str, Any]:
        return {"smooth": self.smooth, "per_image": self.per_image}


@_SERIALIZABLE
class BCEDice(_SteelLoss):
    """A weighted sum of (weighted) binary cross-entropy and soft Dice loss.

        loss_b = bce_weight * WeightedBCE(pos_weight)_b + dice_weight * SoftDice(smooth)_b

    BCE gives every pixel a gradient; Dice rewards overlap whatever the defect's size.
    `0.75 / 0.25` is the first-place Severstal solution's second-stage mix.

    Args:
        bce_weight: float. Weight of the BCE term. Defaults to `0.75`.
        dice_weight: float. Weight of the Dice term. Defaults to `0.25`.
        pos_weight: float, sequence of floats or None. Per-channel positive weight of the BCE
            term (see `WeightedBCE`). Defaults to `None` (plain BCE).
        smooth: float. Smoothing of the Dice term. Defaults to `1.0`.
        per_image: bool. Dice per image or over the batch. Defaults to `True`.
        name: str. The loss's name. Defaults to `"bce_dice"`.
        reduction: str. How Keras reduces the per-image values. Defaults to
            `"sum_over_batch_size"`.
        dtype: str or None. The dtype of the computation. Defaults to `None` (`floatx`).

    Example:

    >>> import numpy as np
    >>> y = np.array([[[[1.0], [0.0]]]])
    >>> p = np.array([[[[0.5], [0.5]]]])
    >>> float(BCEDice()(y, p))  # 0.75 * ln 2 + 0.25 * (1 / 3)
    0.6031...
    """

    def __init__(
        self,
        bce_weight: float = 0.75,
        dice_weight: float = 0.25,
        pos_weight: float | Sequence[float] | None = None,
        smooth: float = 1.0,
        per_image: bool = True,
        name: str = "bce_dice",
        reduction: str = "sum_over_batch_size",
        dtype: str | None = None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.bce_weight = float(bce_weight)
        self.dice_weight = float(dice_weight)
        self.pos_weight = _normalise_pos_weight(pos_weight)
        self.smooth = float(smooth)
        self.per_image = bool(per_image)

    def call(self, y_true, y_pred):
        return bce_dice_loss(y_true, y_pred, **self._own_config())

    def _own_config(self) -> dict[str, Any]:
        return {
            "bce_weight": self.bce_weight,
            "dice_weight": self.dice_weight,
            "pos_weight": self.pos_weight,
            "smooth": self.smooth,
            "per_image": self.per_image,
        }


@_SERIALIZABLE
class Focal(_SteelLoss):
    """Binary focal loss (Lin et al., 2017), which down-weights easy pixels.

    For masks `y` and probabilities `p` (clipped to `[1e-7, 1 - 1e-7]`), the loss of one
    image is the mean over its pixels and channels of

        -(alpha * y * (1 - p)^gamma * log(p) + (1 - alpha) * (1 - y) * p^gamma * log(1 - p))

    Args:
        gamma: float. Focusing exponent; `0` gives `alpha`-weighted BCE. Defaults to `2.0`.
        alpha: float. Weight of the positive term, `1 - alpha` of the negative one.
            Defaults to `0.25`.
        name: str. The loss's name. Defaults to `"focal"`.
        reduction: str. How Keras reduces the per-image values. Defaults to
            `"sum_over_batch_size"`.
        dtype: str or None. The dtype of the computation. Defaults to `None` (`floatx`).

    Example:

    >>> import numpy as np
    >>> y = np.array([[[[1.0]]]])
    >>> p = np.array([[[[0.5]]]])
    >>> float(Focal()(y, p))  # 0.25 * 0.5 ** 2 * ln 2
    0.0433...
    """

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: float = 0.25,
        name: str = "focal",
        reduction: str = "sum_over_batch_size",
        dtype: str | None = None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.gamma = float(gamma)
        self.alpha = float(alpha)

    def call(self, y_true, y_pred):
        return binary_focal(y_true, y_pred, self.gamma, self.alpha)

    def _own_config(self) -> dict[str, Any]:
        return {"gamma": self.gamma, "alpha": self.alpha}


_REGISTRY: dict[str, tuple[type[_SteelLoss], dict[str, Any]]] = {
    "bce": (WeightedBCE, {"pos_weight": None, "name": "bce"}),
    "weighted_bce": (WeightedBCE, {}),
    "dice": (SoftDice, {}),
    "bce_dice": (BCEDice, {}),
    "focal": (Focal, {}),
}


def list_losses() -> tuple[str, ...]:
    """The names `get_loss` accepts."""
    return tuple(_REGISTRY)


def get_loss(name: str, /, **kwargs: Any) -> keras.losses.Loss:
    """Build a loss by name, for recipes and the command line.

    Args:
        name: str. One of `list_losses()`: `"bce"` (plain BCE), `"weighted_bce"`, `"dice"`,
            `"bce_dice"`, `"focal"`.
        **kwargs: Arguments of the loss's class, overriding its defaults (`name=` too).

    Returns:
        A `keras.losses.Loss`.

    Raises:
        ConfigError: for an unknown name.

    Example:

    >>> get_loss("bce_dice", pos_weight=(2, 2, 1, 1.5)).pos_weight
    [2.0, 2.0, 1.0, 1.5]
    """
    if name not in _REGISTRY:
        raise ConfigError(f"unknown loss {name!r}: choose one of {', '.join(_REGISTRY)}")
    cls, defaults = _REGISTRY[name]
    return cls(**{**defaults, **kwargs})
