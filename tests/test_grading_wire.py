"""The grader's wire format and its static check of library imports, on real bytes and sources.

What crosses from a student's process to the judge is decoded here; it must come back as the
same values, and anything else (pickles, object arrays as raw bytes, lying lengths, frames over
the size limit, deep nesting) must be refused with :class:`WireError`, never executed.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from steel_keras.grading import wire
from steel_keras.grading.library_check import library_uses
from steel_keras.grading.wire import WireError


def round_trip(value, files_under: tuple[str, ...] = (), files_dir: str | None = None):
    stream = io.BytesIO()
    wire.write_message(stream, {"value": value}, files_under=files_under)
    stream.seek(0)
    return wire.read_message(stream, 2**30, files_dir=files_dir)["value"]


def frame(header: dict, *buffers: bytes, sizes: list[int] | None = None) -> io.BytesIO:
    """A frame written by hand, as a hostile worker could (``sizes``: the buffer sizes it
    claims)."""
    sizes = [len(b) for b in buffers] if sizes is None else sizes
    text = json.dumps({**header, "_buffers": sizes}).encode()
    body = struct.pack("<I", len(text)) + text + b"".join(buffers)
    return io.BytesIO(struct.pack("<Q", len(body)) + body)


def test_values_come_back_with_their_types():
    frame_ = pd.DataFrame(
        {"ImageId": ["a.jpg", "b.jpg"], "ClassId": [1, 4], "area": [0.5, 2.0]},
        index=pd.RangeIndex(2),
    )
    series = pd.Series([3, 1], index=[1, 4], name="images")
    values = [
        None,
        True,
        7,
        2.5,
        "x",
        [1, (2, "y")],
        {50: 1.5, "k": [None]},
        {1, 2},
        b"\x00\x01",
        np.float64(0.25),
        np.int64(3),
        np.zeros((2, 3), np.uint8),
        np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        np.array(["a", None], dtype=object),
        Path("/data/train.csv"),
        frame_,
        series,
        pd.Index(["a", "b"], name="ImageId"),
        pd.Series(pd.array([1, None], "Int64")),
    ]
    for value in values:
        got = round_trip(value)
        assert type(got) is type(value), (value, got)
        if isinstance(value, pd.DataFrame):
            pd.testing.assert_frame_equal(got, value)
        elif isinstance(value, pd.Series):
            pd.testing.assert_series_equal(got, value)
        elif isinstance(value, pd.Index):
            pd.testing.assert_index_equal(got, value)
        elif isinstance(value, np.ndarray):
            assert got.dtype == value.dtype and got.shape == value.shape
            assert got.tolist() == value.tolist()
        else:
            assert got == value
    assert np.isnan(round_trip(float("nan")))
    assert isinstance(round_trip(np.float64(0.5)), float), "np.float64 is still a float"


def test_a_file_of_the_test_travels_as_a_copy(tmp_path):
    source = tmp_path / "train.csv"
    source.write_text("ImageId,ClassId,EncodedPixels\n")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    copy = round_trip(source, files_under=(str(tmp_path),), files_dir=str(inbox))
    assert isinstance(copy, Path) and copy != source and copy.is_relative_to(inbox)
    assert copy.read_text() == source.read_text()
    as_text = round_trip(str(source), files_under=(str(tmp_path),), files_dir=str(inbox))
    assert isinstance(as_text, str) and Path(as_text).read_text() == source.read_text()
    # Outside the allowed folders a path is only a path.
    assert round_trip(source) == source


def test_what_cannot_travel_is_refused_by_name():
    with pytest.raises(WireError, match="cannot send a value of type builtins.object"):
        round_trip(object())
    nested: list = []
    for _ in range(wire.MAX_DEPTH + 5):
        nested = [nested]
    with pytest.raises(WireError, match="nested"):
        round_trip(nested)


def test_hostile_frames_are_refused_without_running_anything():
    # A pickle, dressed as a numpy array, would run code when loaded with allow_pickle=True.
    evil = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        evil, {"descr": "|O", "fortran_order": False, "shape": (1,)}
    )
    evil = evil.getvalue() + pickle.dumps([1])
    with pytest.raises(WireError, match="Python objects"):
        wire.read_message(frame({"value": {"$": "ndarray", "buf": 0}}, evil), 2**20)
    with pytest.raises(WireError):
        wire.read_message(frame({"value": {"$": "ndarray", "buf": 0}}, pickle.dumps([1, 2])), 2**20)
    # A header that claims 10**12 elements is refused before anything that size is allocated.
    liar = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        liar, {"descr": "|u1", "fortran_order": False, "shape": (10**12,)}
    )
    with pytest.raises(WireError, match="came with 4 bytes"):
        wire.read_message(
            frame({"value": {"$": "ndarray", "buf": 0}}, liar.getvalue() + b"abcd"), 2**20
        )
    with pytest.raises(WireError, match="over the limit"):
        wire.read_message(frame({"value": "x" * 5000}), 1000)
    with pytest.raises(WireError, match="unknown tag"):
        wire.read_message(frame({"value": {"$": "pickle", "data": "..."}}), 2**20)
    with pytest.raises(WireError, match="past the end"):
        wire.read_message(frame({"value": {"$": "bytes", "buf": 0}}, b"abc", sizes=[100]), 2**20)
    with pytest.raises(WireError, match="cut short"):
        wire.read_message(io.BytesIO(frame({"value": 1}).getvalue()[:-3]), 2**20)


STUDENT = """
import numpy as np
from steel_keras.rle import decode_rle as library_decode
import steel_keras.constants as constants


def decode_rle(rle, shape=(256, 1600)):
    return library_decode(rle, shape)


def _helper(mask):
    return constants.IMAGE_SHAPE


def encode_rle(mask):
    return _helper(mask)


def mask_area_from_rle(rle):
    import importlib
    return importlib.import_module("steel_keras.data.dataset").rle_area(rle)


def read_long_table(path):
    from steel_keras.data import annotations
    return annotations.read_annotations(path)


def defect_free_ids(long_table, all_ids):
    return sorted(set(all_ids) - set(long_table["ImageId"]))
"""


def test_library_imports_are_found_with_their_line():
    uses = library_uses(
        STUDENT,
        ["decode_rle", "encode_rle", "mask_area_from_rle", "read_long_table", "defect_free_ids"],
    )
    assert sorted(uses) == ["decode_rle", "encode_rle", "mask_area_from_rle", "read_long_table"]
    assert (
        "`from steel_keras.rle import decode_rle as library_decode` (line 3)" in uses["decode_rle"]
    )
    assert "`import steel_keras.constants as constants` (line 4)" in uses["encode_rle"]
    assert "line 21" in uses["mask_area_from_rle"] and "line 25" in uses["read_long_table"]
    assert all("out of reach while grading" in m for m in uses.values())


def test_a_star_import_of_the_key_taints_every_exercise_and_a_later_def_wins():
    star = "def a():\n    return 1\n\nfrom steel_keras.grading.solutions import *\n"
    assert sorted(library_uses(star, ["a", "b"])) == ["a", "b"]
    shadowed = "from steel_keras.rle import decode_rle\n\ndef decode_rle(rle):\n    return 1\n"
    assert library_uses(shadowed, ["decode_rle"]) == {}
    assert library_uses("def broken(:\n", ["broken"]) == {}
