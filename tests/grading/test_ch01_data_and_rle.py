"""Graded tests of chapter 01: RLE decode and encode, mask areas, the long table (10 points).

Each test takes the functions under test from the ``impl`` fixture. Expected values come from
hand-made examples and a pixel-by-pixel decoder written here, never from the library itself.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

SMALL = (6, 5)


def brute_force_decode(rle: str, shape: tuple[int, int]) -> np.ndarray:
    """Decode one pixel at a time, straight from the definition."""
    height, width = shape
    mask = np.zeros(shape, dtype=np.uint8)
    values = [int(v) for v in rle.split()]
    for start, length in zip(values[0::2], values[1::2], strict=True):
        for pixel in range(start - 1, start - 1 + length):
            mask[pixel % height, pixel // height] = 1
    return mask


def random_masks(seed: int, count: int, shape: tuple[int, int] = SMALL) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    masks = [(rng.random(shape) < p).astype(np.uint8) for p in rng.uniform(0.1, 0.9, count)]
    first_last = np.zeros(shape, dtype=np.uint8)
    first_last[0, 0] = first_last[-1, -1] = 1
    return [*masks, first_last, np.ones(shape, dtype=np.uint8)]


@pytest.mark.points(1)
def test_decode_rle_is_column_major_and_one_indexed(impl):
    mask = np.asarray(impl.decode_rle("1 3 257 2 409600 1"))
    assert mask.shape == (256, 1600)
    assert mask[:3, 0].tolist() == [1, 1, 1] and mask[3, 0] == 0
    assert mask[:2, 1].tolist() == [1, 1] and mask[2, 1] == 0
    assert mask[255, 1599] == 1
    assert int(mask.sum()) == 6


@pytest.mark.points(1)
def test_decode_rle_matches_pixel_by_pixel_decoding(impl):
    cases = ["1 1", "5 2 9 4", "2 1 4 1 6 1 30 1", "1 30"]
    for rle in cases:
        got = np.asarray(impl.decode_rle(rle, SMALL))
        np.testing.assert_array_equal(got, brute_force_decode(rle, SMALL), err_msg=rle)


@pytest.mark.points(1)
def test_decode_rle_empty_string_and_dtype(impl):
    empty = np.asarray(impl.decode_rle("", SMALL))
    assert empty.shape == SMALL and not empty.any()
    mask = np.asarray(impl.decode_rle("3 4", SMALL))
    assert mask.dtype == np.uint8, f"expected uint8, got {mask.dtype}"
    assert set(np.unique(mask).tolist()) == {0, 1}


@pytest.mark.points(1)
def test_encode_rle_known_masks(impl):
    mask = np.array([[1, 1, 0], [1, 0, 0], [1, 0, 1], [0, 0, 0]])
    assert impl.encode_rle(mask) == "1 3 5 1 11 1"
    assert impl.encode_rle(np.zeros(SMALL, dtype=np.uint8)) == ""
    assert impl.encode_rle(np.full(SMALL, 255, dtype=np.uint8)) == "1 30"


@pytest.mark.points(2)
def test_encode_rle_round_trips_with_the_definition(impl):
    for mask in random_masks(seed=1, count=20):
        rle = impl.encode_rle(mask)
        assert isinstance(rle, str)
        np.testing.assert_array_equal(brute_force_decode(rle, SMALL), mask, err_msg=rle)
        values = [int(v) for v in rle.split()]
        starts, lengths = values[0::2], values[1::2]
        assert all(n >= 1 for n in lengths), f"zero-length run in {rle!r}"
        ends = [s + n for s, n in zip(starts, lengths, strict=True)]
        assert all(e < s for e, s in zip(ends, starts[1:], strict=False)), \
            f"runs of {rle!r} touch or overlap; adjacent pixels belong to one run"


@pytest.mark.points(1)
def test_mask_area_from_rle(impl):
    assert impl.mask_area_from_rle("1 3 257 2") == 5
    assert impl.mask_area_from_rle("") == 0
    assert impl.mask_area_from_rle("100 409501") == 409501
    assert int(impl.mask_area_from_rle("7 1 10 20 40 300")) == 321


ORIGINAL_CSV = """ImageId_ClassId,EncodedPixels
b.jpg_1,
b.jpg_2,
b.jpg_3,5 10 20 5
b.jpg_4,
a.jpg_1,1 3
a.jpg_2,
a.jpg_3,
a.jpg_4,100 7
c.jpg_1,
c.jpg_2,
c.jpg_3,
c.jpg_4,
"""

LONG_CSV = """ImageId,ClassId,EncodedPixels
b.jpg,3,5 10 20 5
a.jpg,4,100 7
a.jpg,1,1 3
"""

EXPECTED = pd.DataFrame({"ImageId": ["a.jpg", "a.jpg", "b.jpg"], "ClassId": [1, 4, 3],
                         "EncodedPixels": ["1 3", "100 7", "5 10 20 5"]})


def check_long_table(table: pd.DataFrame) -> None:
    assert list(table.columns) == ["ImageId", "ClassId", "EncodedPixels"]
    assert pd.api.types.is_integer_dtype(table["ClassId"]), "ClassId must be integers"
    assert table.index.tolist() == list(range(len(EXPECTED))), "reset the index"
    as_plain = {"ImageId": object, "ClassId": np.int64, "EncodedPixels": object}
    pd.testing.assert_frame_equal(table.astype(as_plain), EXPECTED.astype(as_plain))


@pytest.mark.points(1)
def test_read_long_table_original_format(impl, tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(ORIGINAL_CSV)
    check_long_table(impl.read_long_table(path))


@pytest.mark.points(1)
def test_read_long_table_later_format(impl, tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(LONG_CSV)
    check_long_table(impl.read_long_table(str(path)))


@pytest.mark.points(1)
def test_defect_free_ids(impl):
    all_ids = ["c.jpg", "a.jpg", "d.jpg", "b.jpg"]
    assert list(impl.defect_free_ids(EXPECTED, all_ids)) == ["c.jpg", "d.jpg"]
    assert list(impl.defect_free_ids(EXPECTED.iloc[:0], ["b.jpg", "a.jpg"])) == ["a.jpg", "b.jpg"]
    assert list(impl.defect_free_ids(EXPECTED, ["a.jpg", "b.jpg"])) == []
