"""RLE: the competition's convention (1-indexed, column-major), round trips and malformed input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from steel_keras.errors import RLEError
from steel_keras.rle import (
    decode_rle,
    encode_rle,
    masks_from_rles,
    rles_from_masks,
    stack_masks,
    unstack_masks,
    validate_rle,
)

H, W = 256, 1600


def test_pixel_numbering_is_one_indexed_column_major():
    mask = decode_rle("1 1 2 1 257 1")
    assert mask[0, 0] == 1 and mask[1, 0] == 1 and mask[0, 1] == 1
    assert mask.sum() == 3


def test_first_pixel():
    mask = np.zeros((H, W), np.uint8)
    mask[0, 0] = 1
    assert encode_rle(mask) == "1 1"
    np.testing.assert_array_equal(decode_rle("1 1"), mask)


def test_last_pixel():
    mask = np.zeros((H, W), np.uint8)
    mask[-1, -1] = 1
    assert encode_rle(mask) == f"{H * W} 1"
    np.testing.assert_array_equal(decode_rle(f"{H * W} 1"), mask)


def test_full_mask():
    mask = np.ones((H, W), np.uint8)
    assert encode_rle(mask) == f"1 {H * W}"
    np.testing.assert_array_equal(decode_rle(f"1 {H * W}"), mask)


def test_empty_mask_and_empty_inputs():
    assert encode_rle(np.zeros((H, W), np.uint8)) == ""
    for empty in ("", "   ", None, float("nan")):
        out = decode_rle(empty)
        assert out.shape == (H, W) and out.dtype == np.uint8 and out.sum() == 0


def test_one_full_column():
    mask = np.zeros((H, W), np.uint8)
    mask[:, 3] = 1
    assert encode_rle(mask) == f"{3 * H + 1} {H}"
    np.testing.assert_array_equal(decode_rle(f"{3 * H + 1} {H}"), mask)


def test_run_wrapping_from_one_column_into_the_next():
    mask = decode_rle(f"{H - 1} 4")  # rows 254, 255 of column 0, rows 0, 1 of column 1
    assert mask[H - 2 :, 0].tolist() == [1, 1] and mask[:2, 1].tolist() == [1, 1]
    assert mask.sum() == 4


def test_adjacent_runs_decode_and_encode_merged():
    np.testing.assert_array_equal(decode_rle("1 2 3 2"), decode_rle("1 4"))
    assert encode_rle(decode_rle("1 2 3 2")) == "1 4"


def test_decode_output_is_a_writable_uint8_array():
    mask = decode_rle("5 10")
    assert mask.dtype == np.uint8 and mask.shape == (H, W) and mask.flags.writeable
    mask[0, 0] = 1  # a real array, not a read-only view
    assert np.ascontiguousarray(mask).sum() == 11


def test_encode_treats_any_nonzero_as_foreground():
    mask = np.zeros((4, 3), np.float32)
    mask[1, 0] = 0.7
    mask[2, 0] = 255
    assert encode_rle(mask) == "2 2"


def test_custom_shape():
    mask = decode_rle("2 3", shape=(4, 2))
    assert mask.tolist() == [[0, 0], [1, 0], [1, 0], [1, 0]]


@pytest.mark.parametrize(
    ("rle", "message"),
    [
        ("1 2 3", "odd number of tokens"),
        ("1 x", "'x' is not an integer"),
        ("1.5 2", "'1.5' is not an integer"),
        ("1 2 3 4e1", "'4e1' is not an integer"),
        ("1,2", "'1,2' is not an integer"),
        ("+-3 4", "'\\+-3' is not an integer"),
        ("1-2 3", "'1-2' is not an integer"),
        ("\uff11 \uff13", "'\uff11' is not an integer in ASCII digits"),  # full-width 1 3
        ("\u0661 \u0663", "'\u0661' is not an integer in ASCII digits"),  # Arabic-Indic 1 3
        ("1\u00a03", r"'1\\xa03' is not an integer"),  # a no-break space is not a separator
        ("99999999999999999999 2", "far past the end"),
        ("0 3", "starts at 0"),
        ("-4 3", "starts at -4"),
        ("5 0", "has length 0"),
        ("5 -2", "has length -2"),
        (f"{H * W} 2", "past the last pixel"),
        ("100 5 50 5", "sorted"),
        ("100 5 102 5", "overlap"),
    ],
)
def test_malformed_rle_raises_value_error_saying_what_is_wrong(rle, message):
    with pytest.raises(ValueError, match=message) as info:
        decode_rle(rle, image_id="0002cc93b.jpg", class_id=3)
    assert isinstance(info.value, RLEError)
    assert "0002cc93b.jpg" in str(info.value) and "class 3" in str(info.value)
    with pytest.raises(RLEError, match=message):
        validate_rle(rle)


def test_parsing_leaves_other_threads_warning_filters_alone():
    """Regression: parsing once used warnings.catch_warnings(), which is process-wide, so a
    warning raised by Keras in another thread while the data pipeline decoded masks became an
    exception."""
    import threading
    import warnings

    stop = threading.Event()

    def decode_forever():
        while not stop.is_set():
            with pytest.raises(RLEError):
                validate_rle("1 x")
            decode_rle("1 3 10 2")

    worker = threading.Thread(target=decode_forever)
    worker.start()
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            for _ in range(2000):
                warnings.warn("harmless", DeprecationWarning, stacklevel=1)
    finally:
        stop.set()
        worker.join()
    assert len(seen) == 2000


def test_non_string_rle_is_an_error():
    with pytest.raises(RLEError, match="expected a string"):
        decode_rle(12)  # type: ignore[arg-type]


def test_encode_rejects_wrong_dimensions():
    with pytest.raises(ValueError, match="2-D"):
        encode_rle(np.zeros((2, 2, 2)))


small_masks = arrays(
    np.uint8,
    st.tuples(st.integers(1, 12), st.integers(1, 12)),
    elements=st.integers(0, 1),
)


@given(small_masks)
@settings(max_examples=300, deadline=None)
def test_round_trip_any_small_mask(mask):
    rle = encode_rle(mask)
    np.testing.assert_array_equal(decode_rle(rle, mask.shape), mask)
    validate_rle(rle, mask.shape)


@st.composite
def valid_runs(draw, n_pixels=H * W):
    """Sorted, non-touching runs over a full-size image, as the competition writes them."""
    cuts = sorted(draw(st.sets(st.integers(1, n_pixels), min_size=0, max_size=40)))
    if len(cuts) % 2:
        cuts = cuts[:-1]
    return [(a, b - a) for a, b in zip(cuts[0::2], cuts[1::2], strict=True) if b > a]


@given(valid_runs())
@settings(max_examples=200, deadline=None)
def test_round_trip_full_size_rle(runs):
    rle = " ".join(f"{s} {n}" for s, n in runs)
    mask = decode_rle(rle)
    assert int(mask.sum()) == sum(n for _, n in runs)
    assert encode_rle(mask) == rle


@given(valid_runs())
@settings(max_examples=100, deadline=None)
def test_decode_matches_a_plain_reference(runs):
    flat = np.zeros(H * W, np.uint8)
    for start, length in runs:
        flat[start - 1 : start - 1 + length] = 1
    expected = flat.reshape(W, H).T
    np.testing.assert_array_equal(decode_rle(" ".join(f"{s} {n}" for s, n in runs)), expected)


def test_stack_and_unstack():
    masks = [decode_rle(f"{1 + i * 1000} {10 * (i + 1)}") for i in range(4)]
    stacked = stack_masks(masks)
    assert stacked.shape == (H, W, 4) and stacked.dtype == np.uint8
    for original, back in zip(masks, unstack_masks(stacked), strict=True):
        np.testing.assert_array_equal(original, back)
    with pytest.raises(ValueError):
        stack_masks(masks[:3])
    with pytest.raises(ValueError):
        unstack_masks(np.zeros((H, W, 3)))


def test_masks_from_rles_mapping_and_sequence_agree():
    rles = {1: "1 5", 3: "1000 20"}
    from_map = masks_from_rles(rles, image_id="a.jpg")
    from_seq = masks_from_rles(["1 5", "", "1000 20", None])
    np.testing.assert_array_equal(from_map, from_seq)
    assert from_map[..., 1].sum() == 0 and from_map[..., 3].sum() == 0
    assert rles_from_masks(from_map) == ["1 5", "", "1000 20", ""]
    with pytest.raises(RLEError, match="class ids must be 1-4"):
        masks_from_rles({5: "1 1"})


def test_masks_from_rles_names_the_class_of_a_bad_rle():
    with pytest.raises(RLEError, match=r"image a\.jpg, class 2"):
        masks_from_rles({2: "5 0"}, image_id="a.jpg")


@pytest.mark.real_data
def test_every_real_mask_round_trips_exactly(real_sample):
    import pandas as pd

    table = pd.read_csv(real_sample / "derived" / "train_subset1000_new_format.csv")
    assert len(table) == 1429
    for image_id, class_id, rle in table.itertuples(index=False):
        mask = decode_rle(rle, image_id=image_id, class_id=class_id)
        assert mask.sum() > 0
        assert encode_rle(mask) == rle, (image_id, class_id)
