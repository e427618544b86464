"""Chapter 02 exercises: exploring the masks, and what the numbers mean for the metric.

Every function takes the long table of chapter 01 (``ImageId, ClassId, EncodedPixels``, one row
per non-empty mask) and, where defect-free images matter, the list of all image ids. Fill in
each function, replacing the ``raise NotImplementedError(...)`` line, and check your work with::

    steel-keras grade --chapter 2 --path exercises
"""

from __future__ import annotations

import numpy as np  # noqa: F401 - for your solutions
import pandas as pd

CLASS_IDS = (1, 2, 3, 4)


def per_image_table(long_table: pd.DataFrame, all_ids: list[str]) -> pd.DataFrame:
    """Exercise 2.1: one row per image with what it holds.

    Args:
        long_table: the long table, non-empty masks only.
        all_ids: every image id, defect-free ones included.

    Returns:
        A DataFrame with one row per image of ``all_ids`` (sorted, each once), a fresh index
        ``0..n-1`` and the columns, in this order:

        - ``ImageId`` (str);
        - ``has_defect`` (bool): the image has at least one mask;
        - ``classes`` (str): the classes present in increasing order, space-separated:
          ``""``, ``"3"``, ``"1 3"``;
        - ``n_classes`` (int): how many classes are present;
        - ``area_1`` .. ``area_4`` (int): the pixels of each class's mask (0 when absent).

    Hints:
        - Your ``mask_area_from_rle`` of chapter 01 gives an area without decoding.
        - ``DataFrame.pivot(index="ImageId", columns="ClassId", values="area")`` then
          ``.reindex(index=..., columns=[1, 2, 3, 4]).fillna(0)`` gives one row per image.
    """
    raise NotImplementedError("Exercise 2.1: per_image_table is not written yet")


def class_balance(long_table: pd.DataFrame) -> pd.Series:
    """Exercise 2.2: how many images have a defect of each class.

    Args:
        long_table: the long table, non-empty masks only.

    Returns:
        A Series of ints indexed by the class ids 1, 2, 3, 4 (in this order, a class with no
        mask counts 0), named ``"images"``.

    Hints:
        - ``value_counts`` counts; ``reindex(..., fill_value=0)`` adds the missing classes.
    """
    raise NotImplementedError("Exercise 2.2: class_balance is not written yet")


def classes_per_image(long_table: pd.DataFrame, all_ids: list[str]) -> pd.Series:
    """Exercise 2.3: how many images have 0, 1, 2, 3 or 4 defect classes.

    Args:
        long_table: the long table, non-empty masks only.
        all_ids: every image id, defect-free ones included (they count in row 0).

    Returns:
        A Series of ints indexed 0, 1, 2, 3, 4 (in this order, zeros included), named
        ``"images"``; its sum is the number of distinct images.

    Hints:
        - Count the classes of each image with ``groupby("ImageId")``, then give the
          defect-free images their 0 with ``reindex(all_ids, fill_value=0)``.
    """
    raise NotImplementedError("Exercise 2.3: classes_per_image is not written yet")


def empty_pair_share(long_table: pd.DataFrame, n_images: int) -> float:
    """Exercise 2.4: the share of (image, class) pairs without a mask.

    The competition averages a Dice score over all ``4 * n_images`` (image, class) pairs, and
    Dice is 1 when both the truth and the prediction are empty. So this share is exactly the
    score of a submission that predicts nothing at all: about 0.85 on the Severstal data.

    Args:
        long_table: the long table, non-empty masks only (one row per non-empty pair).
        n_images: the number of images, defect-free ones included.

    Returns:
        A float in [0, 1].

    Raises:
        ValueError: ``n_images`` is 0 or less, or too small to hold the table's masks.
    """
    raise NotImplementedError("Exercise 2.4: empty_pair_share is not written yet")

