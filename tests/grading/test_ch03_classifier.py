"""Graded tests of chapter 03: the classifier, its head, and how to judge it (10 points).

Each test takes the functions under test from the ``impl`` fixture. The Keras exercises are
called through ``impl.harness``: a trusted helper builds the symbolic inputs beside the code
under test and reports the model it returns as data (layers, their classes and settings, shapes,
weights, outputs), which the tests check. The models are tiny and run eagerly.
"""

from __future__ import annotations

import numpy as np
import pytest

SMALL_CNN_FILTERS = [8, 16, 32, 64, 128]
SMALL_CNN_WEIGHTS = 99_113  # sum over blocks of 9*c_in*f + 4*f, plus the head's 128 + 1


def layers_of(model: dict, kind: str) -> list[dict]:
    """The layers of a described model that are instances of the Keras class ``kind``."""
    return [layer for layer in model["layers"] if kind in layer["classes"]]


def small_cnn(impl, input_shape, **kwargs) -> dict:
    model = impl.harness("keras_model", "build_small_cnn", [input_shape], **kwargs)
    assert model["is_model"], f"build_small_cnn returned a {model['returned']}, not a keras.Model"
    return model


@pytest.mark.points(1)
def test_majority_accuracy_counts_the_larger_class(impl):
    assert impl.majority_accuracy(np.array([0, 0, 1])) == pytest.approx(2 / 3)
    assert impl.majority_accuracy(np.array([1, 1, 1, 0])) == pytest.approx(0.75)
    assert impl.majority_accuracy(np.array([1, 0, 1, 0])) == pytest.approx(0.5)
    assert impl.majority_accuracy(np.array([1, 1])) == pytest.approx(1.0)
    assert impl.majority_accuracy(np.array([[True], [False], [False], [False]])) == pytest.approx(
        0.75
    )
    assert isinstance(impl.majority_accuracy(np.array([0, 1, 1])), float)
    with pytest.raises(ValueError):
        impl.majority_accuracy(np.array([]))


@pytest.mark.points(1)
def test_classifier_head_layers_and_shape(impl):
    model = impl.harness("keras_block", "classifier_head", [(4, 6, 16)], kwargs={"dropout": 0.3})
    assert model["output_shape"] == (None, 1)
    layers = model["layers"][1:]
    assert [layer["name"] for layer in layers] == ["pool", "head_dropout", "has_defect"]
    pool, dropout, dense = layers
    assert "GlobalAveragePooling2D" in pool["classes"]
    assert "Dropout" in dropout["classes"]
    assert dropout["settings"]["rate"] == pytest.approx(0.3)
    assert "Dense" in dense["classes"] and dense["settings"]["units"] == 1


@pytest.mark.points(1)
def test_classifier_head_is_a_pooled_sigmoid(impl):
    kernel = np.array([[1.0], [-2.0], [0.5], [0.0]], dtype=np.float32)
    x = np.random.default_rng(0).normal(size=(3, 2, 3, 4)).astype(np.float32)
    model = impl.harness(
        "keras_block",
        "classifier_head",
        [(2, 3, 4)],
        inputs=[x],
        set_weights={"has_defect": [kernel, np.array([0.25], np.float32)]},
    )
    assert model["params"] == 4 + 1
    expected = 1 / (1 + np.exp(-(x.mean(axis=(1, 2)) @ kernel + 0.25)))
    np.testing.assert_allclose(model["outputs"], expected, rtol=1e-5)


@pytest.mark.points(2)
def test_build_small_cnn_blocks(impl):
    model = small_cnn(impl, (64, 128, 1))
    assert model["input_shape"] == (None, 64, 128, 1) and model["output_shape"] == (None, 1)
    convs = [c["settings"] for c in layers_of(model, "Conv2D")]
    assert [c["filters"] for c in convs] == SMALL_CNN_FILTERS
    assert all(
        c["strides"] == (2, 2)
        and c["kernel_size"] == (3, 3)
        and c["padding"] == "same"
        and not c["use_bias"]
        for c in convs
    )
    norms = layers_of(model, "BatchNormalization")
    assert len(norms) == 5 and all(n["settings"]["momentum"] == pytest.approx(0.9) for n in norms)
    standardize = layers_of(model, "LayerNormalization")
    assert len(standardize) == 1 and tuple(standardize[0]["settings"]["axis"]) == (1, 2, 3)
    assert (
        len(layers_of(model, "ReLU"))
        + sum(layer["activation"] == "relu" for layer in layers_of(model, "Activation"))
        == 5
    )
    assert model["params"] == SMALL_CNN_WEIGHTS


@pytest.mark.points(1)
def test_build_small_cnn_outputs_probabilities(impl):
    x = np.random.default_rng(1).random((2, 32, 96, 1), dtype=np.float32)
    model = small_cnn(impl, (32, 96, 1), inputs=[x])
    assert model["params"] == SMALL_CNN_WEIGHTS
    prob = np.asarray(model["outputs"])
    assert prob.shape == (2, 1) and np.all((prob > 0) & (prob < 1))
    assert "Dense" in model["layers"][-1]["classes"]
    assert model["layers"][-1]["activation"] == "sigmoid"


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
