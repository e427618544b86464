"""Keras Dice against the competition's definition written out in numpy."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import steel_keras  # noqa: F401
from steel_keras.errors import ConfigError
from steel_keras.metrics import DicePerClass, dice_coefficient


def competition_dice(y_true: np.ndarray, y_pred: np.ndarray, threshold: float = 0.5) -> float:
    """The Kaggle definition: mean over (image, class) pairs of 2|X∩Y| / (|X| + |Y|), 1 if empty."""
    scores = []
    for image in range(y_true.shape[0]):
        for cls in range(y_true.shape[-1]):
            truth = y_true[image, ..., cls] > 0.5
            predicted = y_pred[image, ..., cls] > threshold
            total = truth.sum() + predicted.sum()
            scores.append(1.0 if total == 0 else 2.0 * (truth & predicted).sum() / total)
    return float(np.mean(scores))


def random_batch(seed: int, shape=(3, 4, 6, 4)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y_true = (rng.random(shape) > 0.6).astype("float32")
    y_true[0, ..., 1] = 0  # an empty true mask in every batch
    y_pred = rng.random(shape).astype("float32")
    y_pred[0, ..., 1] *= 0.4  # ... predicted empty: scores 1
    return y_true, y_pred


def test_dice_by_hand():
    y_true = np.zeros((1, 2, 2, 2), "float32")
    y_true[0, 0, 0, 0] = 1
    y_pred = np.zeros((1, 2, 2, 2), "float32")
    y_pred[0, 0, :, 0] = 0.9
    # class 1: 2 * 1 / (1 + 2); class 2: both empty -> 1
    assert float(dice_coefficient(y_true, y_pred)) == pytest.approx((2 / 3 + 1) / 2)


def test_empty_truth_with_a_false_positive_scores_zero():
    y_true = np.zeros((1, 2, 2, 1), "float32")
    y_pred = np.zeros((1, 2, 2, 1), "float32")
    y_pred[0, 1, 1, 0] = 0.7
    assert float(dice_coefficient(y_true, y_pred)) == 0.0


def test_a_pixel_at_the_threshold_is_negative():
    y_true = np.ones((1, 1, 1, 1), "float32")
    assert float(dice_coefficient(y_true, np.full_like(y_true, 0.5))) == 0.0
    assert float(dice_coefficient(y_true, np.full_like(y_true, 0.5), threshold=0.4)) == 1.0


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), threshold=st.sampled_from([0.3, 0.5, 0.7]))
def test_dice_coefficient_matches_the_competition_definition(seed, threshold):
    y_true, y_pred = random_batch(seed)
    expected = competition_dice(y_true, y_pred, threshold)
    got = float(dice_coefficient(y_true, y_pred, threshold=threshold))
    assert got == pytest.approx(expected, abs=1e-6)


def test_metric_accumulates_the_mean_over_all_pairs_of_all_batches():
    (y1, p1), (y2, p2) = random_batch(1), random_batch(2, shape=(2, 4, 6, 4))
    metric = DicePerClass()
    metric.update_state(y1, p1)
    metric.update_state(y2, p2)
    expected = competition_dice(np.concatenate([y1, y2]), np.concatenate([p1, p2]))
    assert float(metric.result()) == pytest.approx(expected, abs=1e-6)
    metric.reset_state()
    assert float(metric.result()) == 0.0


@pytest.mark.parametrize("class_index", [0, 1, 3])
def test_class_index_scores_one_channel(class_index):
    y_true, y_pred = random_batch(3)
    metric = DicePerClass(class_index=class_index)
    metric.update_state(y_true, y_pred)
    index = slice(class_index, class_index + 1)
    expected = competition_dice(y_true[..., index], y_pred[..., index])
    assert float(metric.result()) == pytest.approx(expected, abs=1e-6)
    assert metric.name == f"dice_class_{class_index + 1}"


def test_sample_weight_weights_images():
    y_true, y_pred = random_batch(4)
    metric = DicePerClass()
    metric.update_state(y_true, y_pred, sample_weight=np.array([0.0, 1.0, 0.0]))
    expected = competition_dice(y_true[1:2], y_pred[1:2])
    assert float(metric.result()) == pytest.approx(expected, abs=1e-6)


def test_class_index_out_of_range_is_a_config_error():
    y_true, y_pred = np.zeros((1, 2, 2, 1)), np.zeros((1, 2, 2, 1))
    with pytest.raises(ConfigError, match=r"class_index=2\) on a model with 1 channel"):
        DicePerClass(class_index=2).update_state(y_true, y_pred)


def test_metric_round_trips_through_keras_serialization():
    metric = DicePerClass(class_index=2, threshold=0.4, smooth=1.0, name="dice_3")
    config = keras.saving.serialize_keras_object(metric)
    restored = keras.saving.deserialize_keras_object(config)
    assert isinstance(restored, DicePerClass)
    assert restored.get_config() == metric.get_config()
    assert metric.get_config()["class_index"] == 2


def test_metric_runs_inside_fit():
    inputs = keras.Input((4, 6, 1))
    outputs = keras.layers.Conv2D(2, 1, activation="sigmoid")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile("adam", "binary_crossentropy", metrics=[DicePerClass(), DicePerClass(0)])
    y_true, _ = random_batch(6, shape=(4, 4, 6, 2))
    history = model.fit(np.random.rand(4, 4, 6, 1), y_true, epochs=1, verbose=0)
    assert {"dice", "dice_class_1"} <= set(history.history)
    assert 0.0 <= history.history["dice"][0] <= 1.0
