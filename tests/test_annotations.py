"""CSV files: both train.csv formats, submissions, errors that name the file and the line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from steel_keras.data.annotations import (
    TRAIN_COLUMNS,
    Annotations,
    load_annotations,
    read_annotations,
    read_submission,
    write_annotations,
    write_submission,
)
from steel_keras.errors import DataError, RLEError
from steel_keras.rle import decode_rle, encode_rle

ORIGINAL = "derived/train_subset1000_orig_format.csv"
NEW = "derived/train_subset1000_new_format.csv"


def write(tmp_path: Path, text: str, name: str = "train.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ----- real files ---------------------------------------------------------------------------


@pytest.mark.real_data
def test_real_train_csv_formats_read_into_the_same_table(real_sample):
    original = load_annotations(real_sample / ORIGINAL)
    new = load_annotations(real_sample / NEW)
    assert original.format == "original" and new.format == "train"
    assert len(new.table) == 1429
    pd.testing.assert_frame_equal(original.table, new.table)
    assert original.image_ids == new.image_ids
    assert len(original.image_ids) == 1000
    assert list(original.table.columns) == ["ImageId", "ClassId", "EncodedPixels"]
    assert set(original.table["ClassId"]) <= {1, 2, 3, 4}


@pytest.mark.real_data
def test_every_real_mask_round_trips_exactly(real_sample):
    table = read_annotations(real_sample / NEW)
    for image_id, class_id, rle in table.itertuples(index=False):
        mask = decode_rle(rle, image_id=image_id, class_id=class_id)
        assert mask.any()
        assert encode_rle(mask) == rle, (image_id, class_id)


@pytest.mark.real_data
def test_real_sample_submission_excerpt_lists_images_without_masks(real_sample):
    sample = read_submission(real_sample / "meta/vburlay_sample_submission_excerpt.csv")
    assert sample.format == "submission"
    assert len(sample.image_ids) == 16 and "0a2c9f2e5.jpg" in sample.image_ids
    assert sample.table.empty  # every row is the "1 409600,0" placeholder
    with pytest.raises(DataError, match="line 2: ClassId '0'"):
        load_annotations(real_sample / "meta/vburlay_sample_submission_excerpt.csv")


@pytest.mark.real_data
def test_real_original_format_submission(real_sample):
    pseudo = read_submission(real_sample / "meta/khornlund_pseudo_public_test.csv")
    assert pseudo.format == "original"
    expected = (real_sample / "derived/public_test_ids_1801.txt").read_text().split()
    assert pseudo.image_ids == sorted(expected)
    assert not pseudo.table.empty
    assert (pseudo.table.groupby("ImageId").size() <= 4).all()


# ----- formats and round trips --------------------------------------------------------------


def test_defect_free_images_are_listed_in_the_original_format(tmp_path):
    path = write(
        tmp_path,
        "ImageId_ClassId,EncodedPixels\n"
        "a.jpg_1,1 3\na.jpg_2,\na.jpg_3,\na.jpg_4,\n"
        "b.jpg_1,\nb.jpg_2,\nb.jpg_3,\nb.jpg_4,\n",
    )
    ann = load_annotations(path)
    assert ann.image_ids == ["a.jpg", "b.jpg"]
    assert ann.table.to_dict("records") == [
        {"ImageId": "a.jpg", "ClassId": 1, "EncodedPixels": "1 3"}
    ]
    assert ann.masks_of("a.jpg") == {1: "1 3"} and ann.masks_of("b.jpg") == {}
    assert ann.rle_lookup() == {"a.jpg": {1: "1 3"}}


def test_whitespace_bom_and_blank_lines_are_tolerated(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes(
        b"\xef\xbb\xbfImageId, ClassId, EncodedPixels\r\na.jpg, 3, 1 3 \r\n\r\nb.jpg,1,5 2\r\n\r\n"
    )
    ann = load_annotations(path)
    assert ann.table.values.tolist() == [["a.jpg", 3, "1 3"], ["b.jpg", 1, "5 2"]]


def test_header_only_file_is_an_empty_table(tmp_path):
    ann = load_annotations(write(tmp_path, "ImageId,ClassId,EncodedPixels\n"))
    assert ann.table.empty and ann.image_ids == []


TABLE = pd.DataFrame(
    {
        "ImageId": ["a.jpg", "a.jpg", "c.jpg"],
        "ClassId": [1, 3, 4],
        "EncodedPixels": ["1 3 300 2", "1000 10", "409599 2"],
    }
)


@pytest.mark.parametrize("fmt", ["original", "train", "submission"])
def test_write_submission_round_trips(tmp_path, fmt):
    ids = ["a.jpg", "b.jpg", "c.jpg"]
    path = write_submission(tmp_path / f"{fmt}.csv", Annotations(TABLE, ids), format=fmt)
    header = path.read_text().splitlines()[0]
    assert (
        header
        == {
            "original": "ImageId_ClassId,EncodedPixels",
            "train": "ImageId,ClassId,EncodedPixels",
            "submission": "ImageId,EncodedPixels,ClassId",
        }[fmt]
    )
    back = read_submission(path)
    assert back.format == fmt
    assert back.image_ids == ids  # b.jpg has no mask and is still listed
    pd.testing.assert_frame_equal(back.table, TABLE, check_dtype=False)
    assert len(path.read_text().splitlines()) == 1 + 4 * len(ids)


def test_write_submission_skips_empty_masks_and_rejects_unknown_images(tmp_path):
    path = write_submission(tmp_path / "s.csv", Annotations(pd.DataFrame(
        [("a.jpg", 2, "1 3"), ("a.jpg", 3, "")], columns=list(TRAIN_COLUMNS)), ["a.jpg"]))
    assert read_submission(path).rle_lookup() == {"a.jpg": {2: "1 3"}}
    with pytest.raises(DataError, match="not in the submission.*z.jpg"):
        write_submission(tmp_path / "s.csv", Annotations(pd.DataFrame(
            [("z.jpg", 1, "1 3")], columns=list(TRAIN_COLUMNS)), ["a.jpg"]))
    with pytest.raises(ValueError, match="format must be one of"):
        write_submission(tmp_path / "s.csv", Annotations(TABLE, ["a.jpg"]), format="wide")


def test_write_annotations_round_trips_and_handles_an_empty_table(tmp_path):
    path = write_annotations(tmp_path / "train.csv", TABLE)
    pd.testing.assert_frame_equal(read_annotations(path), TABLE, check_dtype=False)
    empty = TABLE.iloc[:0]
    path = write_annotations(tmp_path / "empty.csv", empty)
    assert path.read_text().strip() == "ImageId,ClassId,EncodedPixels"


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_write_then_read_is_the_identity(tmp_path, data):
    ids = [f"{i:09x}.jpg" for i in range(data.draw(st.integers(1, 5)))]
    rows = []
    for image_id in ids:
        for class_id in data.draw(st.sets(st.integers(1, 4), max_size=4)):
            start = data.draw(st.integers(1, 409_000))
            rows.append((image_id, class_id, f"{start} {data.draw(st.integers(1, 600))}"))
    table = pd.DataFrame(rows, columns=["ImageId", "ClassId", "EncodedPixels"])
    fmt = data.draw(st.sampled_from(["original", "train", "submission"]))
    back = read_submission(write_submission(tmp_path / "s.csv", Annotations(table, ids),
                                         format=fmt))
    assert back.image_ids == ids
    expected = table.sort_values(["ImageId", "ClassId"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(back.table, expected, check_dtype=False)


# ----- errors name the file and the line ----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            "ImageId,EncodedPixels\na.jpg,1 3\n",
            r"unexpected columns \['ImageId', 'EncodedPixels'\]",
        ),
        (",ImageId,ClassId,EncodedPixels\n0,a.jpg,1,1 3\n", "index=False"),
        (
            "ImageId_ClassId,EncodedPixels\na.jpg_1,\na.jpg,1 3\n",
            r"line 3: ImageId_ClassId 'a.jpg' is not 'IMAGE.jpg_CLASS'",
        ),
        (
            "ImageId_ClassId,EncodedPixels\na.jpg_1,\na.jpg_x,\n",
            r"line 3: ClassId 'x' is not one of",
        ),
        ("ImageId,ClassId,EncodedPixels\na.jpg,1,1 3\na.jpg,5,1 3\n", r"line 3: ClassId '5'"),
        ("ImageId,ClassId,EncodedPixels\na.jpg,1.5,1 3\n", r"line 2: ClassId '1.5'"),
        ("ImageId,ClassId,EncodedPixels\na.jpg,,1 3\n", r"line 2: ClassId ''"),
        ("ImageId,ClassId,EncodedPixels\na.jpg,0,1 409600\n", r"line 2: ClassId '0'.*sample sub"),
        ("ImageId,ClassId,EncodedPixels\n,1,1 3\n", "line 2: empty ImageId"),
        (
            "ImageId,ClassId,EncodedPixels\na.jpg,1,1 3\n\nb.jpg,2,4 4\na.jpg,1,9 3\n",
            "line 5: image a.jpg class 1 appears again \\(first on line 2\\)",
        ),
        (
            "ImageId_ClassId,EncodedPixels\na.jpg_1,\na.jpg_2,\na.jpg_1,\n",
            "line 4: image a.jpg class 1 appears again",
        ),
    ],
)
def test_bad_rows_raise_data_error_naming_file_and_line(tmp_path, text, match):
    path = write(tmp_path, text)
    with pytest.raises(DataError, match=match) as info:
        load_annotations(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("rle", "match"),
    [
        ("1 3 5", "odd number of tokens"),
        ("1 x", "token 'x' is not an integer"),
        ("0 3", "starts at 0"),
        ("10 0", "has length 0"),
        ("409600 2", "past the last pixel"),
        ("10 5 12 3", "must be sorted"),
    ],
)
def test_malformed_rle_names_file_line_image_and_class(tmp_path, rle, match):
    path = write(tmp_path, f"ImageId,ClassId,EncodedPixels\nok.jpg,1,1 3\nbad.jpg,3,{rle}\n")
    with pytest.raises(RLEError, match=match) as info:
        load_annotations(path)
    message = str(info.value)
    assert str(path) in message and "line 3" in message
    assert "image bad.jpg" in message and "class 3" in message
    assert load_annotations(path, validate=False).table.shape == (2, 3)


def test_missing_empty_and_folder_paths(tmp_path):
    with pytest.raises(DataError, match="nope.csv: file not found"):
        load_annotations(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="is a folder"):
        load_annotations(tmp_path)
    with pytest.raises(DataError, match="the file is empty"):
        load_annotations(write(tmp_path, ""))


def test_rles_are_checked_against_the_given_shape(tmp_path):
    path = write(tmp_path, "ImageId,ClassId,EncodedPixels\na.jpg,1,100 30\n")
    with pytest.raises(RLEError, match="past the last pixel 100"):
        load_annotations(path, shape=(10, 10))
    assert np.array_equal(load_annotations(path).table["ClassId"], [1])


def test_write_submission_is_atomic_and_keeps_the_old_file_on_failure(tmp_path):
    path = write_submission(tmp_path / "s.csv", Annotations(TABLE, ["a.jpg", "c.jpg"]))
    before = path.read_bytes()
    broken = Annotations(TABLE.assign(ClassId=["x", 3, 4]), ["a.jpg", "c.jpg"])
    with pytest.raises(ValueError):
        write_submission(path, broken)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["s.csv"]  # no partial file left behind
