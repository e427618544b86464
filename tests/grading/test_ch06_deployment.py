"""Graded tests of chapter 06: parity with Keras and the speed figures (10 points).

Each test takes the functions under test from the ``impl`` fixture; the expected values are
worked out by hand or element by element.
"""

from __future__ import annotations

import numpy as np
import pytest

RNG = np.random.default_rng(6)


@pytest.mark.points(1)
def test_max_abs_difference_known_values(impl):
    assert impl.max_abs_difference(np.array([0.2, 0.7]), np.array([0.2001, 0.69])) == \
        pytest.approx(0.01)
    assert impl.max_abs_difference(np.zeros((2, 3)), np.zeros((2, 3))) == 0.0
    assert impl.max_abs_difference(np.array([[1.0, -2.0]]), np.array([[0.5, 1.0]])) == \
        pytest.approx(3.0)
    assert isinstance(impl.max_abs_difference(np.ones(3), np.ones(3)), float)


@pytest.mark.points(1)
def test_max_abs_difference_refuses_other_shapes(impl):
    a = RNG.random((2, 4, 6, 4)).astype(np.float32)
    b = a + RNG.normal(scale=1e-4, size=a.shape).astype(np.float32)
    assert impl.max_abs_difference(a, b) == pytest.approx(float(np.abs(a - b).max()), rel=1e-6)
    with pytest.raises(ValueError):
        impl.max_abs_difference(np.zeros((2, 1)), np.zeros((2,)))


@pytest.mark.points(1)
def test_dice_agreement_known_values(impl):
    assert impl.dice_agreement(np.array([0.2, 0.7, 0.6]), np.array([0.3, 0.8, 0.4])) == \
        pytest.approx(2 / 3)
    assert impl.dice_agreement(np.array([0.1, 0.2]), np.array([0.3, 0.4])) == 1.0, \
        "both masks empty: they agree"
    assert impl.dice_agreement(np.array([0.5]), np.array([0.49])) == 0.0, "0.5 is foreground"


@pytest.mark.points(2)
def test_dice_agreement_threshold_and_shapes(impl):
    a, b = RNG.random((3, 5, 7, 4)), RNG.random((3, 5, 7, 4))
    for threshold in (0.3, 0.5, 0.8):
        x, y = a >= threshold, b >= threshold
        expected = 2 * (x & y).sum() / (x.sum() + y.sum())
        assert impl.dice_agreement(a, b, threshold=threshold) == pytest.approx(expected)
    with pytest.raises(ValueError):
        impl.dice_agreement(np.zeros((4,)), np.zeros((2, 2)))


@pytest.mark.points(1)
def test_latency_percentiles_in_milliseconds(impl):
    result = impl.latency_percentiles(np.array([0.010, 0.012, 0.011, 0.050]), (50,))
    assert list(result) == [50] and result[50] == pytest.approx(11.5)
    assert impl.latency_percentiles(np.array([0.2]), (50, 95)) == \
        {50: pytest.approx(200.0), 95: pytest.approx(200.0)}


@pytest.mark.points(2)
def test_latency_percentiles_interpolate(impl):
    seconds = RNG.random(37)
    result = impl.latency_percentiles(seconds)
    assert sorted(result) == [50, 95]
    assert result[95] == pytest.approx(1000 * np.percentile(seconds, 95))
    ten = np.arange(1, 11) / 1000  # 1 ms .. 10 ms
    assert impl.latency_percentiles(ten, (0, 90, 100)) == \
        {0: pytest.approx(1.0), 90: pytest.approx(9.1), 100: pytest.approx(10.0)}
    with pytest.raises(ValueError):
        impl.latency_percentiles(np.array([]))


@pytest.mark.points(1)
def test_throughput_is_images_over_total_time(impl):
    assert impl.throughput(8, np.array([0.1, 0.3])) == pytest.approx(40.0)
    # not the mean of per-call rates (80 and 26.7 images/s): that would be 53.3
    assert impl.throughput(1, np.array([0.5])) == pytest.approx(2.0)
    assert isinstance(impl.throughput(4, np.array([0.25, 0.25])), float)


@pytest.mark.points(1)
def test_throughput_refuses_bad_input(impl):
    for batch, seconds in [(8, np.array([])), (8, np.array([0.0, 0.0])), (0, np.array([0.1]))]:
        with pytest.raises(ValueError):
            impl.throughput(batch, seconds)
