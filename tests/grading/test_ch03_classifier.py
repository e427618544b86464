"""Graded tests of chapter 03: the classifier, its head, and how to judge it (10 points).

Each test takes the functions under test from the ``impl`` fixture. Keras is imported here, when
the tests are collected, so that its start-up time does not count against any test's limit; the
models are tiny and run eagerly.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

SMALL_CNN_FILTERS = [8, 16, 32, 64, 128]
SMALL_CNN_WEIGHTS = 99_113  # sum over blocks of 9*c_in*f + 4*f, plus the head's 128 + 1


def layers_of(model, kind):
    return [layer for layer in model.layers if isinstance(layer, kind)]


@pytest.mark.points(1)
def test_majority_accuracy_counts_the_larger_class(impl):
    assert impl.majority_accuracy(np.array([0, 0, 1])) == pytest.approx(2 / 3)
    assert impl.majority_accuracy(np.array([1, 1, 1, 0])) == pytest.approx(0.75)
    assert impl.majority_accuracy(np.array([1, 0, 1, 0])) == pytest.approx(0.5)
    assert impl.majority_accuracy(np.array([1, 1])) == pytest.approx(1.0)
    assert impl.majority_accuracy(np.array([[True], [False], [False], [False]])) == \
        pytest.approx(0.75)
    assert isinstance(impl.majority_accuracy(np.array([0, 1, 1])), float)
    with pytest.raises(ValueError):
        impl.majority_accuracy(np.array([]))


@pytest.mark.points(1)
def test_classifier_head_layers_and_shape(impl):
    features = keras.Input((4, 6, 16))
    model = keras.Model(features, impl.classifier_head(features, dropout=0.3))
    assert model.output_shape == (None, 1)
    assert [layer.name for layer in model.layers[1:]] == ["pool", "head_dropout", "has_defect"]
    pool, dropout, dense = model.layers[1:]
    assert isinstance(pool, keras.layers.GlobalAveragePooling2D)
    assert isinstance(dropout, keras.layers.Dropout) and dropout.rate == pytest.approx(0.3)
    assert isinstance(dense, keras.layers.Dense) and dense.units == 1


@pytest.mark.points(1)
def test_classifier_head_is_a_pooled_sigmoid(impl):
    features = keras.Input((2, 3, 4))
    model = keras.Model(features, impl.classifier_head(features))
    assert model.count_params() == 4 + 1
    kernel = np.array([[1.0], [-2.0], [0.5], [0.0]], dtype=np.float32)
    model.get_layer("has_defect").set_weights([kernel, np.array([0.25], np.float32)])
    x = np.random.default_rng(0).normal(size=(3, 2, 3, 4)).astype(np.float32)
    expected = 1 / (1 + np.exp(-(x.mean(axis=(1, 2)) @ kernel + 0.25)))
    np.testing.assert_allclose(np.asarray(model(x, training=False)), expected, rtol=1e-5)


@pytest.mark.points(2)
def test_build_small_cnn_blocks(impl):
    model = impl.build_small_cnn((64, 128, 1))
    assert isinstance(model, keras.Model)
    assert model.input_shape == (None, 64, 128, 1) and model.output_shape == (None, 1)
    convs = layers_of(model, keras.layers.Conv2D)
    assert [c.filters for c in convs] == SMALL_CNN_FILTERS
    assert all(c.strides == (2, 2) and c.kernel_size == (3, 3) and c.padding == "same"
               and not c.use_bias for c in convs)
    norms = layers_of(model, keras.layers.BatchNormalization)
    assert len(norms) == 5 and all(n.momentum == pytest.approx(0.9) for n in norms)
    standardize = layers_of(model, keras.layers.LayerNormalization)
    assert len(standardize) == 1 and tuple(standardize[0].axis) == (1, 2, 3)
    assert len(layers_of(model, keras.layers.ReLU)) + sum(
        getattr(layer, "activation", None) is keras.activations.relu
        for layer in layers_of(model, keras.layers.Activation)) == 5
    assert model.count_params() == SMALL_CNN_WEIGHTS


@pytest.mark.points(1)
def test_build_small_cnn_outputs_probabilities(impl):
    model = impl.build_small_cnn((32, 96, 1))
    assert model.count_params() == SMALL_CNN_WEIGHTS
    x = np.random.default_rng(1).random((2, 32, 96, 1), dtype=np.float32)
    prob = np.asarray(model(x, training=False))
    assert prob.shape == (2, 1) and np.all((prob > 0) & (prob < 1))
    assert isinstance(model.layers[-1], keras.layers.Dense)
    assert model.layers[-1].activation is keras.activations.sigmoid


@pytest.mark.points(1)
def test_roc_auc_by_ranks_known_values(impl):
    truth = np.array([0, 0, 1, 1])
    assert impl.roc_auc_by_ranks(truth, np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert impl.roc_auc_by_ranks(truth, np.array([0.1, 0.2, 0.3, 0.4])) == pytest.approx(1.0)
    assert impl.roc_auc_by_ranks(truth, np.array([0.4, 0.3, 0.2, 0.1])) == pytest.approx(0.0)
    rng = np.random.default_rng(2)
    truth, score = rng.integers(0, 2, 200), rng.random(200)
    pairs = (score[truth == 1][:, None] > score[truth == 0][None, :]).mean()
    assert impl.roc_auc_by_ranks(truth, score) == pytest.approx(pairs)


@pytest.mark.points(1)
def test_roc_auc_by_ranks_ties_and_one_class(impl):
    assert impl.roc_auc_by_ranks(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    truth = np.array([0, 0, 1, 1, 1])
    score = np.array([0.2, 0.6, 0.6, 0.6, 0.9])
    # positive-negative pairs: vs 0.2 all win (3); vs 0.6: 0.6 ties (2 x 0.5), 0.9 wins
    assert impl.roc_auc_by_ranks(truth, score) == pytest.approx((3 + 1 + 1) / 6)
    assert impl.roc_auc_by_ranks(np.array([1, 1]), np.array([0.1, 0.9])) is None


@pytest.mark.points(1)
def test_threshold_for_recall_known_values(impl):
    truth = np.array([1, 1, 0, 1, 1, 0])
    score = np.array([0.9, 0.8, 0.7, 0.3, 0.6, 0.1])
    assert impl.threshold_for_recall(truth, score, 0.5) == pytest.approx(0.8)
    assert impl.threshold_for_recall(truth, score, 0.75) == pytest.approx(0.6)
    assert impl.threshold_for_recall(truth, score, 0.76) == pytest.approx(0.3)
    assert impl.threshold_for_recall(truth, score, 1.0) == pytest.approx(0.3)
    ten = np.arange(10) / 10
    # 0.7 * 10 is 7.000000000000001 in floating point: 7 of 10 still reaches recall 0.7.
    assert impl.threshold_for_recall(np.ones(10), ten, 0.7) == pytest.approx(0.3)


@pytest.mark.points(1)
def test_threshold_for_recall_random_and_errors(impl):
    rng = np.random.default_rng(3)
    truth, score = rng.integers(0, 2, 100), rng.random(100)
    for target in (0.1, 0.33, 0.9, 0.95):
        t = impl.threshold_for_recall(truth, score, target)
        assert (score[truth == 1] >= t).mean() >= target
        higher = score[truth == 1][score[truth == 1] > t]
        assert higher.size == 0 or (score[truth == 1] >= higher.min()).mean() < target
    for target in (0.0, 1.5):
        with pytest.raises(ValueError):
            impl.threshold_for_recall(truth, score, target)
    with pytest.raises(ValueError):
        impl.threshold_for_recall(np.zeros(3), np.array([0.1, 0.2, 0.3]), 0.5)
