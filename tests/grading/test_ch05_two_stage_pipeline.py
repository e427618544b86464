"""Graded tests of chapter 05: the competition metric and the pipeline's knobs (10 points).

Each test takes the functions under test from the ``impl`` fixture; everything is numpy, and
the expected values are worked out by hand or pixel by pixel from the definitions.
"""

from __future__ import annotations

import numpy as np
import pytest

RNG = np.random.default_rng(5)


def loop_dice(pred, truth):
    pred, truth = np.asarray(pred).ravel() != 0, np.asarray(truth).ravel() != 0
    both = sum(1 for p, t in zip(pred, truth, strict=True) if p and t)
    total = int(pred.sum()) + int(truth.sum())
    return 1.0 if total == 0 else 2 * both / total


@pytest.mark.points(1)
def test_pair_dice_known_values(impl):
    assert impl.pair_dice(np.array([1, 1, 0, 0]), np.array([0, 1, 1, 0])) == pytest.approx(0.5)
    assert impl.pair_dice(np.zeros((3, 4)), np.zeros((3, 4))) == 1.0, "empty/empty scores 1"
    assert impl.pair_dice(np.ones((2, 2)), np.zeros((2, 2))) == 0.0
    assert impl.pair_dice(np.zeros((2, 2)), np.ones((2, 2))) == 0.0


@pytest.mark.points(1)
def test_pair_dice_random_masks_and_shape_check(impl):
    for _ in range(5):
        pred, truth = RNG.random((6, 9)) > 0.6, (RNG.random((6, 9)) > 0.7).astype(np.uint8)
        assert impl.pair_dice(pred, truth) == pytest.approx(loop_dice(pred, truth))
    with pytest.raises(ValueError):
        impl.pair_dice(np.zeros((2, 3)), np.zeros((3, 2)))


@pytest.mark.points(1)
def test_competition_score_counts_every_pair(impl):
    truth = np.zeros((2, 2, 2, 4), np.uint8)
    truth[0, 0, :, 0] = 1  # one non-empty pair among eight
    pred = np.zeros_like(truth)
    assert impl.competition_score(pred, truth) == pytest.approx(7 / 8)
    pred[0, 0, 0, 0] = 1
    assert impl.competition_score(pred, truth) == pytest.approx((7 + 2 / 3) / 8)
    pred[1, 1, 1, 3] = 1  # a false positive on an empty pair costs a full point
    assert impl.competition_score(pred, truth) == pytest.approx((6 + 2 / 3) / 8)


@pytest.mark.points(1)
def test_competition_score_random_masks(impl):
    pred = (RNG.random((3, 5, 6, 4)) > 0.8).astype(np.uint8)
    truth = (RNG.random((3, 5, 6, 4)) > 0.85).astype(np.uint8)
    truth[1] = 0
    pred[2, ..., 1] = 0
    truth[2, ..., 1] = 0
    expected = np.mean(
        [loop_dice(pred[n, ..., c], truth[n, ..., c]) for n in range(3) for c in range(4)]
    )
    assert impl.competition_score(pred, truth) == pytest.approx(expected)


@pytest.mark.points(1)
def test_remove_small_components_8_connected(impl):
    mask = np.array([[1, 1, 0, 0, 0], [1, 0, 0, 1, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 1]])
    kept = np.asarray(impl.remove_small_components(mask, 2)).astype(bool)
    # the diagonal chain (1,3)-(2,2) is one component of 2 pixels; (3,4) touches nothing
    expected = mask.astype(bool)
    expected[3, 4] = False
    np.testing.assert_array_equal(kept, expected)
    assert not np.asarray(impl.remove_small_components(mask, 4)).astype(bool)[1:].any()


@pytest.mark.points(1)
def test_remove_small_components_edge_cases(impl):
    mask = (RNG.random((20, 30)) > 0.7).astype(np.uint8)
    np.testing.assert_array_equal(
        np.asarray(impl.remove_small_components(mask, 1)).astype(bool), mask.astype(bool)
    )
    empty = np.zeros((4, 5), np.uint8)
    assert not np.asarray(impl.remove_small_components(empty, 10)).any()
    assert not np.asarray(impl.remove_small_components(mask, 10**6)).any()


@pytest.mark.points(1)
def test_apply_min_area_drops_small_masks_whole(impl):
    masks = np.zeros((4, 5, 4), np.uint8)
    masks[0, :2, 0] = 1  # 2 pixels
    masks[:, :, 1] = 1  # 20 pixels
    masks[1:3, 1:3, 3] = 1  # 4 pixels
    before = masks.copy()
    out = np.asarray(impl.apply_min_area(masks, [3, 20, 0, 5]))
    assert out.dtype == np.uint8 and out.shape == masks.shape
    assert out.sum(axis=(0, 1)).tolist() == [0, 20, 0, 0]
    np.testing.assert_array_equal(masks, before)  # the input must not change
    assert np.asarray(impl.apply_min_area(masks, [2, 0, 0, 4])).sum(axis=(0, 1)).tolist() == [
        2,
        20,
        0,
        4,
    ]


@pytest.mark.points(1)
def test_gate_masks_per_class_and_any_defect(impl):
    masks = np.ones((2, 3, 4), np.uint8)
    before = masks.copy()
    out = np.asarray(impl.gate_masks(masks, np.array([0.55]), [0.7, 0.5, 0.55, 0.6]))
    assert out.dtype == np.uint8
    assert out.sum(axis=(0, 1)).tolist() == [0, 6, 6, 0], "kept where prob >= threshold"
    out = np.asarray(impl.gate_masks(masks, np.array([0.9, 0.1, 0.6, 0.2]), [0.5] * 4))
    assert out.sum(axis=(0, 1)).tolist() == [6, 0, 6, 0]
    np.testing.assert_array_equal(masks, before)


@pytest.mark.points(2)
def test_hflip_tta_flips_back_and_averages(impl):
    batch = RNG.random((2, 3, 5, 1))
    weights = np.arange(5, dtype=float)

    def predict(x):  # not flip-invariant: depends on the column
        return np.concatenate([x * weights[None, None, :, None], 1 - x], axis=-1)

    # The same predict, defined by the harness beside the code under test (a callable cannot
    # be sent there); it also records what hflip_tta passed it.
    trace = impl.harness("hflip_tta_trace", batch, weights)
    out = np.asarray(trace["output"], dtype=float)
    assert out.shape == (2, 3, 5, 2)
    expected = (predict(batch) + np.flip(predict(np.flip(batch, axis=2)), axis=2)) / 2
    np.testing.assert_allclose(out, expected)
    calls = trace["received"]
    assert len(calls) == 2 and np.allclose(calls[1], batch[:, :, ::-1]), (
        "predict once as is and once flipped left-right (axis 2)"
    )
