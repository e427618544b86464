"""Graded tests of chapter 04: segmentation losses, a decoder block, Dice on defects (10 points).

Each test takes the functions under test from the ``impl`` fixture; ``impl.harness`` calls a
function on backend tensors, or builds a decoder block on symbolic inputs and reports it as data.
Expected values are worked out in numpy from the definitions in the exercises' docstrings.
"""

from __future__ import annotations

import numpy as np
import pytest

RNG = np.random.default_rng(4)
Y = (RNG.random((3, 8, 10, 4)) > 0.8).astype(np.float32)
Y[1] = 0.0  # an image without any defect
P = RNG.random((3, 8, 10, 4)).astype(np.float32)


def numpy_soft_dice(y, p, smooth=1.0):
    inter = (y * p).sum(axis=(1, 2))
    total = y.sum(axis=(1, 2)) + p.sum(axis=(1, 2))
    return 1 - ((2 * inter + smooth) / (total + smooth)).mean(axis=-1)


def numpy_bce(y, p):
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(axis=(1, 2, 3))


def values(x):
    return np.asarray(x, dtype=np.float64)


def decoder(impl, name: str, **kwargs) -> dict:
    """A decoder block on inputs of (4, 6, 32) and (8, 12, 16), 24 filters, as data."""
    return impl.harness(
        "keras_block", "decoder_block", [(4, 6, 32), (8, 12, 16)], args=(24, name), **kwargs
    )


@pytest.mark.points(1)
def test_soft_dice_loss_small_examples(impl):
    y = np.array([[[[1.0], [0.0]]]])
    assert values(impl.soft_dice_loss(y, np.array([[[[0.5], [0.5]]]]))) == pytest.approx([1 / 3])
    assert values(impl.soft_dice_loss(y, y)) == pytest.approx([0.0])
    empty = np.zeros((1, 2, 2, 1))
    assert values(impl.soft_dice_loss(empty, empty)) == pytest.approx([0.0]), (
        "an empty mask predicted empty is a perfect match"
    )


@pytest.mark.points(2)
def test_soft_dice_loss_per_image_and_channel(impl):
    loss = values(impl.soft_dice_loss(Y, P))
    assert loss.shape == (3,), "one value per image"
    np.testing.assert_allclose(loss, numpy_soft_dice(Y, P), rtol=1e-5)
    np.testing.assert_allclose(
        values(impl.soft_dice_loss(Y, P, smooth=0.1)), numpy_soft_dice(Y, P, smooth=0.1), rtol=1e-5
    )
    tensors = impl.harness("call_on_tensors", "soft_dice_loss", Y, P)
    np.testing.assert_allclose(values(tensors), numpy_soft_dice(Y, P), rtol=1e-5)


@pytest.mark.points(1)
def test_bce_dice_loss_small_example(impl):
    y = np.array([[[[1.0], [0.0]]]])
    p = np.array([[[[0.5], [0.5]]]])
    assert values(impl.bce_dice_loss(y, p)) == pytest.approx(
        [0.75 * np.log(2) + 0.25 / 3], rel=1e-5
    )


@pytest.mark.points(2)
def test_bce_dice_loss_weights_and_clipping(impl):
    np.testing.assert_allclose(
        values(impl.bce_dice_loss(Y, P)),
        0.75 * numpy_bce(Y, P) + 0.25 * numpy_soft_dice(Y, P),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        values(impl.bce_dice_loss(Y, P, bce_weight=1.0, dice_weight=0.0)),
        numpy_bce(Y, P),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        values(impl.bce_dice_loss(Y, P, bce_weight=0.0, dice_weight=1.0)),
        numpy_soft_dice(Y, P),
        rtol=1e-5,
    )
    hard = values(impl.bce_dice_loss(Y, 1.0 - Y))  # certain and wrong everywhere: still finite
    assert np.all(np.isfinite(hard)) and hard.shape == (3,)


@pytest.mark.points(1)
def test_decoder_block_shapes_and_names(impl):
    model = decoder(impl, "decoder1")
    assert model["output_shape"] == (None, 8, 12, 24)
    names = [layer["name"] for layer in model["layers"] if "InputLayer" not in layer["classes"]]
    assert names == [
        "decoder1_upsample",
        "decoder1_concat",
        "decoder1a_conv",
        "decoder1a_bn",
        "decoder1a_relu",
        "decoder1b_conv",
        "decoder1b_bn",
        "decoder1b_relu",
    ]


@pytest.mark.points(1)
def test_decoder_block_layers_and_weights(impl):
    a = np.random.default_rng(5).random((2, 4, 6, 32), dtype=np.float32)
    b = np.random.default_rng(6).random((2, 8, 12, 16), dtype=np.float32)
    model = decoder(impl, "up", inputs=[a, b])
    concat = next(layer for layer in model["layers"] if layer["name"] == "up_concat")
    assert concat["output_shape"][-1] == 48, "concatenate the upsampled x (32) and the skip (16)"
    convs = [layer["settings"] for layer in model["layers"] if "Conv2D" in layer["classes"]]
    assert [c["kernel_size"] for c in convs] == [(3, 3), (3, 3)]
    assert not any(c["use_bias"] for c in convs) and all(c["padding"] == "same" for c in convs)
    # 3*3*48*24 + 3*3*24*24 convolution weights, 4*24 per batch norm
    assert model["params"] == 9 * 48 * 24 + 9 * 24 * 24 + 2 * 4 * 24
    assert np.all(np.asarray(model["outputs"]) >= 0), "ends with a ReLU"


@pytest.mark.points(1)
def test_dice_per_class_on_defects_counts_defects(impl):
    truth = np.zeros((2, 2, 2, 1))
    truth[0, 0, :, 0] = 1
    prob = np.zeros((2, 2, 2, 1))
    prob[0, 0, 0, 0] = 0.9
    prob[1, 1, 1, 0] = 0.9  # a false mask on an empty pair: not counted here
    np.testing.assert_allclose(impl.dice_per_class_on_defects(prob, truth), [2 / 3])
    np.testing.assert_allclose(impl.dice_per_class_on_defects(prob, truth, threshold=0.95), [0.0])


@pytest.mark.points(1)
def test_dice_per_class_on_defects_absent_classes(impl):
    truth = (RNG.random((4, 6, 6, 4)) > 0.7).astype(np.uint8)
    truth[..., 1] = 0  # no image has class 2
    truth[2, ..., 3] = 0
    prob = RNG.random((4, 6, 6, 4))
    result = np.asarray(impl.dice_per_class_on_defects(prob, truth))
    assert result.shape == (4,) and np.isnan(result[1])
    for c in (0, 2, 3):
        images = [n for n in range(4) if truth[n, ..., c].any()]
        expected = np.mean(
            [
                2
                * ((prob[n, ..., c] > 0.5) & (truth[n, ..., c] > 0)).sum()
                / ((prob[n, ..., c] > 0.5).sum() + truth[n, ..., c].sum())
                for n in images
            ]
        )
        assert result[c] == pytest.approx(expected)
