"""Losses: each against a value computed by hand on a tiny tensor, plus config round trips."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import steel_keras  # noqa: F401  (sets SM_FRAMEWORK before anything imports Keras models)
from steel_keras.errors import ConfigError
from steel_keras.losses import (
    BCEDice,
    Focal,
    SoftDice,
    WeightedBCE,
    bce_dice_loss,
    get_loss,
    list_losses,
)

# One image, one row, two pixels, two channels: y[..., pixel, channel].
Y = np.array([[[[1.0, 0.0], [0.0, 1.0]]]])
P = np.array([[[[0.8, 0.4], [0.1, 0.5]]]])


def value(loss: keras.losses.Loss, y_true, y_pred, **kwargs) -> float:
    return float(loss(y_true.astype("float32"), y_pred.astype("float32"), **kwargs))


def test_weighted_bce_by_hand():
    # pixel 1: class 1 positive (weight 2), class 2 negative; pixel 2 the other way round.
    expected = -(2 * math.log(0.8) + math.log(0.6) + math.log(0.9) + 1 * math.log(0.5)) / 4
    assert value(WeightedBCE(pos_weight=(2.0, 1.0)), Y, P) == pytest.approx(expected, rel=1e-6)


def test_plain_bce_matches_keras():
    expected = -(math.log(0.8) + math.log(0.6) + math.log(0.9) + math.log(0.5)) / 4
    assert value(WeightedBCE(pos_weight=None), Y, P) == pytest.approx(expected, rel=1e-6)
    keras_bce = float(keras.losses.BinaryCrossentropy()(Y, P))
    assert value(get_loss("bce"), Y, P) == pytest.approx(keras_bce, rel=1e-5)


def test_weighted_bce_default_weights_broadcast_over_four_channels():
    y = np.ones((2, 3, 5, 4))
    p = np.full((2, 3, 5, 4), 0.5)
    expected = math.log(2) * (2 + 2 + 1 + 1.5) / 4
    assert value(WeightedBCE(), y, p) == pytest.approx(expected, rel=1e-6)


def test_weighted_bce_rejects_a_pos_weight_per_wrong_number_of_channels():
    with pytest.raises(ConfigError, match="pos_weight has 4 values but the model predicts 2"):
        WeightedBCE()(Y, P)


def test_soft_dice_per_image_by_hand():
    # image 1: y = [1, 0], p = [.5, .5] -> D = (2 * .5 + 1) / (1 + 1 + 1) = 2/3
    # image 2: empty mask predicted empty -> D = (0 + 1) / (0 + 1) = 1
    y = np.array([[[[1.0], [0.0]]], [[[0.0], [0.0]]]])
    p = np.array([[[[0.5], [0.5]]], [[[0.0], [0.0]]]])
    assert value(SoftDice(), y, p) == pytest.approx((1 / 3 + 0) / 2, rel=1e-6)
    # over the batch: I = .5, sum(y) = 1, sum(p) = 1 -> D = 2 / 3 for every image
    assert value(SoftDice(per_image=False), y, p) == pytest.approx(1 / 3, rel=1e-6)


def test_soft_dice_averages_channels():
    # channel 1: (2 * .8 + 1) / (1 + .9 + 1); channel 2: (2 * .5 + 1) / (1 + .9 + 1)
    d1, d2 = 2.6 / 2.9, 2.0 / 2.9
    assert value(SoftDice(), Y, P) == pytest.approx(1 - (d1 + d2) / 2, rel=1e-6)


def test_bce_dice_is_the_weighted_sum_by_hand():
    bce = -(2 * math.log(0.8) + math.log(0.6) + math.log(0.9) + 1.5 * math.log(0.5)) / 4
    dice = 1 - (2.6 / 2.9 + 2.0 / 2.9) / 2
    loss = BCEDice(bce_weight=0.75, dice_weight=0.25, pos_weight=(2.0, 1.5))
    assert value(loss, Y, P) == pytest.approx(0.75 * bce + 0.25 * dice, rel=1e-6)


def test_bce_dice_loss_is_what_bce_dice_computes():
    y, p = Y.astype("float32"), P.astype("float32")
    per_image = np.asarray(bce_dice_loss(y, p, 0.6, 0.4, pos_weight=(2.0, 1.5), smooth=0.5))
    loss = BCEDice(bce_weight=0.6, dice_weight=0.4, pos_weight=(2.0, 1.5), smooth=0.5)
    assert per_image.shape == (1,) and float(per_image[0]) == pytest.approx(value(loss, Y, P))
    plain = float(np.asarray(bce_dice_loss(y, p))[0])
    assert plain == pytest.approx(value(BCEDice(), Y, P))


def test_focal_by_hand():
    y = np.array([[[[1.0], [0.0]]]])
    p = np.array([[[[0.8], [0.3]]]])
    positive = 0.25 * 0.2**2 * -math.log(0.8)
    negative = 0.75 * 0.3**2 * -math.log(0.7)
    assert value(Focal(gamma=2.0, alpha=0.25), y, p) == pytest.approx(
        (positive + negative) / 2, rel=1e-6
    )


def test_focal_with_gamma_zero_and_alpha_half_is_half_bce():
    assert value(Focal(gamma=0.0, alpha=0.5), Y, P) == pytest.approx(
        value(WeightedBCE(pos_weight=None), Y, P) / 2, rel=1e-6
    )


def test_sample_weight_weights_images():
    y = np.concatenate([Y, np.zeros_like(Y)])
    p = np.concatenate([P, np.full_like(P, 0.5)])
    per_image = [value(Focal(), y[i : i + 1], p[i : i + 1]) for i in range(2)]
    weighted = value(Focal(), y, p, sample_weight=np.array([1.0, 0.0]))
    assert weighted == pytest.approx(per_image[0] / 2, rel=1e-6)


@pytest.mark.parametrize("name", list_losses())
def test_every_loss_round_trips_through_keras_serialization(name):
    loss = get_loss(name, name=f"my_{name}")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is type(loss)
    assert restored.get_config() == loss.get_config()
    y4, p4 = np.tile(Y, (1, 1, 1, 2)), np.tile(P, (1, 1, 1, 2))
    assert value(restored, y4, p4) == value(loss, y4, p4)


def test_get_config_holds_every_constructor_argument():
    config = BCEDice(pos_weight=(2, 2, 1, 1.5), smooth=0.5, per_image=False).get_config()
    assert config["pos_weight"] == [2.0, 2.0, 1.0, 1.5]
    assert {
        "bce_weight",
        "dice_weight",
        "smooth",
        "per_image",
        "name",
        "reduction",
        "dtype",
    } <= set(config)


def test_get_loss_overrides_defaults_and_rejects_unknown_names():
    assert get_loss("weighted_bce").pos_weight == [2.0, 2.0, 1.0, 1.5]
    assert get_loss("bce").pos_weight is None
    assert get_loss("focal", gamma=1.0).gamma == 1.0
    with pytest.raises(ConfigError, match="unknown loss 'dise': choose one of bce, weighted_bce"):
        get_loss("dise")


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), smooth=st.floats(0.1, 2.0))
def test_losses_are_non_negative_and_perfect_dice_is_zero(seed, smooth):
    rng = np.random.default_rng(seed)
    y = (rng.random((2, 4, 6, 4)) > 0.7).astype("float32")
    p = rng.random((2, 4, 6, 4)).astype("float32")
    for loss in (WeightedBCE(), SoftDice(smooth=smooth), BCEDice(), Focal()):
        assert value(loss, y, p) >= 0.0
    assert value(SoftDice(smooth=smooth), y, y) == pytest.approx(0.0, abs=1e-6)
