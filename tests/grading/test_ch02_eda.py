"""Graded tests of chapter 02: the per-image table, class balance, the all-empty score (10 points).

Each test takes the functions under test from the ``impl`` fixture; the expected values are
worked out by hand for the small table below.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

# Five images: a.jpg has classes 1 and 3, b.jpg class 3, c.jpg classes 1, 2, 3 and 4;
# d.jpg and e.jpg are defect-free and appear only in ALL_IDS.
LONG = pd.DataFrame({
    "ImageId": ["a.jpg", "a.jpg", "b.jpg", "c.jpg", "c.jpg", "c.jpg", "c.jpg"],
    "ClassId": [1, 3, 3, 1, 2, 3, 4],
    "EncodedPixels": ["1 3", "10 5 20 5", "1 1", "1 2", "5 1", "100 40", "2000 7 3000 3"],
})
ALL_IDS = ["e.jpg", "c.jpg", "a.jpg", "d.jpg", "b.jpg"]


def as_ints(series: pd.Series) -> dict:
    return {int(k): int(v) for k, v in series.items()}


@pytest.mark.points(1)
def test_per_image_table_rows_and_has_defect(impl):
    table = impl.per_image_table(LONG, ALL_IDS)
    assert table["ImageId"].tolist() == ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"]
    assert table.index.tolist() == [0, 1, 2, 3, 4], "reset the index"
    assert table["has_defect"].tolist() == [True, True, True, False, False]


@pytest.mark.points(1)
def test_per_image_table_classes(impl):
    table = impl.per_image_table(LONG, ALL_IDS)
    assert table["classes"].tolist() == ["1 3", "3", "1 2 3 4", "", ""]
    assert [int(n) for n in table["n_classes"]] == [2, 1, 4, 0, 0]


@pytest.mark.points(2)
def test_per_image_table_areas_and_columns(impl):
    table = impl.per_image_table(LONG, ALL_IDS)
    assert list(table.columns) == ["ImageId", "has_defect", "classes", "n_classes",
                                   "area_1", "area_2", "area_3", "area_4"]
    areas = table[["area_1", "area_2", "area_3", "area_4"]]
    assert all(pd.api.types.is_integer_dtype(areas[c]) for c in areas), "areas must be ints"
    np.testing.assert_array_equal(areas.to_numpy(), [[3, 0, 10, 0], [0, 0, 1, 0],
                                                     [2, 1, 40, 10], [0, 0, 0, 0], [0, 0, 0, 0]])


@pytest.mark.points(1)
def test_class_balance_counts(impl):
    balance = impl.class_balance(LONG)
    assert as_ints(balance) == {1: 2, 2: 1, 3: 3, 4: 1}
    assert balance.name == "images"


@pytest.mark.points(1)
def test_class_balance_keeps_absent_classes(impl):
    balance = impl.class_balance(LONG[LONG["ClassId"] == 3])
    assert list(as_ints(balance).items()) == [(1, 0), (2, 0), (3, 3), (4, 0)]


@pytest.mark.points(1)
def test_classes_per_image_counts_defect_free(impl):
    counts = impl.classes_per_image(LONG, ALL_IDS)
    assert list(as_ints(counts).items()) == [(0, 2), (1, 1), (2, 1), (3, 0), (4, 1)]
    assert counts.name == "images"


@pytest.mark.points(1)
def test_classes_per_image_without_masks(impl):
    counts = impl.classes_per_image(LONG.iloc[:0], ["x.jpg", "y.jpg", "x.jpg"])
    assert list(as_ints(counts).items()) == [(0, 2), (1, 0), (2, 0), (3, 0), (4, 0)]


@pytest.mark.points(1)
def test_empty_pair_share_is_the_all_empty_score(impl):
    assert impl.empty_pair_share(LONG, 5) == pytest.approx(13 / 20)
    assert impl.empty_pair_share(LONG.iloc[:0], 3) == pytest.approx(1.0)
    # The Severstal train set: 7,095 masks over 12,568 images.
    severstal = pd.DataFrame({"ImageId": [f"{i}.jpg" for i in range(7095)], "ClassId": 1,
                              "EncodedPixels": "1 1"})
    assert impl.empty_pair_share(severstal, 12568) == pytest.approx(0.8589, abs=1e-4)


@pytest.mark.points(1)
def test_empty_pair_share_rejects_too_few_images(impl):
    for n_images in (0, -1, 1):
        with pytest.raises(ValueError):
            impl.empty_pair_share(LONG, n_images)
