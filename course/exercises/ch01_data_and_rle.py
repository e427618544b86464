"""Chapter 01 exercises: the Severstal CSV files and run-length encoding.

Fill in each function below, replacing the ``raise NotImplementedError(...)`` line. Check your
work with::

    steel-keras grade --chapter 1 --path exercises

The grader prints the points of each public test. The masks follow the competition exactly:
an RLE string is space-separated pairs ``start length``; starts are 1-indexed and pixels are
numbered top to bottom, then left to right (column-major): pixel 1 is (row 0, col 0), pixel 2
is (row 1, col 0), pixel ``height + 1`` is (row 0, col 1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

IMAGE_SHAPE = (256, 1600)


def decode_rle(rle: str, shape: tuple[int, int] = IMAGE_SHAPE) -> np.ndarray:
    """Exercise 1.1: decode an RLE string into a 0/1 mask.

    Args:
        rle: str. Pairs ``start length``, e.g. ``"1 3 257 2"``. ``""`` means an empty mask.
        shape: (height, width) of the mask. Defaults to (256, 1600).

    Returns:
        A ``uint8`` array of ``shape`` holding 0 and 1.

    Example:
        >>> decode_rle("1 3 6 2", (4, 3))[:, :2].tolist()
        [[1, 0], [1, 1], [1, 1], [0, 0]]

    Hints:
        - Fill a flat array of ``height * width`` zeros, one run at a time: a run sets
          ``flat[start - 1 : start - 1 + length]`` (starts are 1-indexed).
        - The flat order is column-major: ``flat.reshape(shape, order="F")``.
    """
    raise NotImplementedError("Exercise 1.1: decode_rle is not written yet")


def encode_rle(mask: np.ndarray) -> str:
    """Exercise 1.2: encode a 2-D mask as an RLE string (the inverse of ``decode_rle``).

    Args:
        mask: 2-D array; any non-zero pixel is foreground.

    Returns:
        ``"start length start length ..."`` with 1-indexed, column-major starts, runs in
        order; ``""`` for an empty mask.

    Example:
        >>> encode_rle(np.array([[1, 1, 0], [1, 0, 0], [1, 0, 1], [0, 0, 0]]))
        '1 3 5 1 11 1'

    Hints:
        - Flatten in column-major order: ``mask.ravel(order="F")``, then compare with 0.
        - Pad with a 0 at both ends; a run starts where the value goes 0 -> 1 and ends where it
          goes 1 -> 0 (``np.diff`` and ``np.flatnonzero`` find both without a Python loop).
        - Mind a mask whose very first or very last pixel is set.
    """
    raise NotImplementedError("Exercise 1.2: encode_rle is not written yet")


def mask_area_from_rle(rle: str) -> int:
    """Exercise 1.3: the number of foreground pixels of an RLE string, without decoding it.

    Args:
        rle: str. An RLE string; ``""`` is an empty mask.

    Returns:
        The sum of the run lengths, as an ``int`` (0 for ``""``).

    Example:
        >>> mask_area_from_rle("1 3 257 2")
        5

    Hints:
        - The lengths are every second number, starting with the second one.
    """
    raise NotImplementedError("Exercise 1.3: mask_area_from_rle is not written yet")


def read_long_table(path: str | Path) -> pd.DataFrame:
    """Exercise 1.4: read a ``train.csv`` in either of Kaggle's formats into the long table.

    The two formats:

    - original (2019): ``ImageId_ClassId,EncodedPixels``, four rows per image, e.g.
      ``0002cc93b.jpg_1,29102 12 ...``; an empty ``EncodedPixels`` means no defect of that class;
    - later: ``ImageId,ClassId,EncodedPixels``, one row per non-empty mask.

    Args:
        path: the CSV file.

    Returns:
        A DataFrame with columns ``ImageId`` (str), ``ClassId`` (int 1-4) and ``EncodedPixels``
        (str), holding the non-empty masks only, sorted by ``ImageId`` then ``ClassId``, with a
        fresh index ``0..n-1``.

    Hints:
        - ``pd.read_csv(path, dtype=str, keep_default_na=False)`` keeps empty cells as ``""``.
        - Tell the formats apart by their columns; split ``ImageId_ClassId`` at its last ``_``
          (``.str.rsplit("_", n=1, expand=True)``).
        - ``sort_values([...]).reset_index(drop=True)``.
    """
    raise NotImplementedError("Exercise 1.4: read_long_table is not written yet")


def defect_free_ids(long_table: pd.DataFrame, all_ids: list[str]) -> list[str]:
    """Exercise 1.5: the images without any defect.

    The long table lists only non-empty masks, so defect-free images appear only in the list
    of all image ids (the files in ``train_images/``, or every id of the original format).

    Args:
        long_table: DataFrame with an ``ImageId`` column, one row per non-empty mask.
        all_ids: every image id, defect-free ones included.

    Returns:
        The ids of ``all_ids`` that have no row in ``long_table``, sorted, each once.

    Hints:
        - Python sets: ``set(all_ids) - set(long_table["ImageId"])``.
    """
    raise NotImplementedError("Exercise 1.5: defect_free_ids is not written yet")
