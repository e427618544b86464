"""EDA numbers and figures: a hand-made folder with known counts, the real sample, the CLI."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from steel_keras.data import Annotations, SteelDataset, write_annotations, write_submission
from steel_keras.eda import (
    class_balance,
    classes_per_image,
    compute_eda,
    empty_pair_share,
    format_eda_summary,
    run_eda,
)
from steel_keras.rle import encode_rle

SHAPE = (256, 1600)


def rle_of(*boxes: tuple[slice, slice]) -> str:
    mask = np.zeros(SHAPE, np.uint8)
    for rows, cols in boxes:
        mask[rows, cols] = 1
    return encode_rle(mask)


# Five train images, two test images. Known answers:
#   a: class 1, squares touching at a corner (one 8-connected object) + a far square: 300 px,
#      2 objects
#   b: class 3, 20 x 50 = 1000 px; class 4, 10 x 10 = 100 px lying inside the class 3 box
#   c: class 3, 5 x 5 = 25 px
#   d, e: no defect
MASKS = [
    ("a.jpg", 1, rle_of((slice(0, 10), slice(0, 10)), (slice(10, 20), slice(10, 20)),
                        (slice(100, 110), slice(500, 510)))),
    ("b.jpg", 3, rle_of((slice(50, 70), slice(100, 150)))),
    ("b.jpg", 4, rle_of((slice(60, 70), slice(140, 150)))),
    ("c.jpg", 3, rle_of((slice(0, 5), slice(1595, 1600)))),
]
TRAIN_IDS = ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"]


def write_jpeg(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(60, 200, size=SHAPE, dtype=np.uint8)
    Image.fromarray(pixels).convert("RGB").save(path, quality=85)


def make_folder(root: Path, fmt: str) -> Path:
    for split, ids in (("train", TRAIN_IDS), ("test", ["t1.jpg", "t2.jpg"])):
        (root / f"{split}_images").mkdir(parents=True)
        for seed, image_id in enumerate(ids):
            write_jpeg(root / f"{split}_images" / image_id, seed)
    masks = pd.DataFrame(MASKS, columns=["ImageId", "ClassId", "EncodedPixels"])
    if fmt == "original":
        write_submission(root / "train.csv", Annotations(masks, TRAIN_IDS), format="original")
    else:
        write_annotations(root / "train.csv", masks)
    return root


@pytest.fixture(scope="module")
def hand_folder(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("eda") / "hand", "train")


def test_numbers_of_a_hand_made_folder_are_exact(hand_folder, tmp_path):
    stats = run_eda(hand_folder, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "eda.json").read_text()) == stats
    assert stats["train_csv_format"] == "train"
    assert (stats["images"], stats["test_images"], stats["masks"]) == (5, 2, 4)
    assert stats["images_with_defects"] == 3
    assert stats["images_without_defects"] == 2
    assert stats["images_per_class"] == {"1": 1, "2": 0, "3": 2, "4": 1}
    assert stats["masks_per_class"] == {"1": 1, "2": 0, "3": 2, "4": 1}
    assert stats["objects_per_class"] == {"1": 2, "2": 0, "3": 2, "4": 1}
    assert stats["multi_class_images"] == 1
    assert stats["classes_per_image"] == {"0": 2, "1": 2, "2": 1, "3": 0, "4": 0}
    assert stats["class_combinations"] == {"1": 1, "3": 1, "3 4": 1, "none": 2}
    assert stats["overlapping_pixels"] == 100
    assert stats["empty_pair_share"] == 16 / 20
    areas = stats["area_quantiles"]
    assert areas["1"] == {"count": 1, "p05": 300, "p25": 300, "p50": 300, "p75": 300,
                          "p95": 300, "mean": 300}
    # Class 3 areas 25 and 1000: linear interpolation between them.
    assert areas["3"]["p05"] == pytest.approx(25 + 0.05 * 975)
    assert areas["3"]["p50"] == areas["3"]["mean"] == pytest.approx(512.5)
    assert areas["2"] == {"count": 0, "p05": None, "p25": None, "p50": None, "p75": None,
                          "p95": None, "mean": None}


def test_figures_are_written_and_absent_class_is_explained(hand_folder, tmp_path):
    stats = run_eda(hand_folder, tmp_path)
    names = set(stats["figures"].values())
    assert names == {"class_balance.png", "classes_per_image.png", "area_histograms.png",
                     "examples_class_1.png", "examples_class_3.png", "examples_class_4.png"}
    for name in names:
        with Image.open(tmp_path / name) as img:
            assert img.format == "PNG" and img.width > 300 and img.height > 100
    assert stats["figures_skipped"] == {"2": "no masks of this class in train.csv"}


def test_both_csv_formats_give_the_same_numbers(hand_folder, tmp_path):
    original = compute_eda(make_folder(tmp_path / "orig", "original"))
    later = compute_eda(hand_folder)
    for stats in (original, later):
        del stats["data_dir"], stats["train_csv_format"]
    assert original == later


def test_summary_names_the_key_numbers(hand_folder):
    text = format_eda_summary(compute_eda(hand_folder, count_objects=False))
    assert "train images" in text and "defect-free 2 (40.0%)" in text
    assert "0.8000" in text and "objects" not in text


# ----- the real sample ---------------------------------------------------------------------


def count_from_csv(path: Path) -> tuple[dict[str, int], int, set[str]]:
    """Images per class, multi-class images and all images, with the csv module alone."""
    classes: dict[str, set[str]] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            image_id, class_id = row["ImageId_ClassId"].rsplit("_", 1)
            if row["EncodedPixels"].strip():
                classes.setdefault(image_id, set()).add(class_id)
            else:
                classes.setdefault(image_id, set())
    per_class = {c: sum(c in s for s in classes.values()) for c in "1234"}
    multi = sum(len(s) > 1 for s in classes.values())
    return per_class, multi, set(classes)


@pytest.fixture(scope="module")
def real_subset_stats(real_sample, tmp_path_factory) -> tuple[dict, Path]:
    folder = tmp_path_factory.mktemp("real") / "csv_only"
    folder.mkdir()
    source = real_sample / "derived" / "train_subset1000_orig_format.csv"
    (folder / "train.csv").write_bytes(source.read_bytes())
    return compute_eda(folder), source


@pytest.mark.real_data
def test_real_subset_counts_from_the_csv_alone(real_subset_stats):
    stats, source = real_subset_stats
    per_class, multi, images = count_from_csv(source)
    assert stats["train_csv_format"] == "original"
    assert stats["images"] == len(images) == 1000
    assert stats["images_with_defects"] == 1000 and stats["images_without_defects"] == 0
    assert stats["multi_class_images"] == multi == 427
    # The subset holds every multi-class image of Kaggle's train.csv: 425 pairs, 2 triples.
    assert stats["classes_per_image"] == {"0": 0, "1": 573, "2": 425, "3": 2, "4": 0}
    assert stats["images_per_class"] == per_class
    assert stats["masks"] == sum(per_class.values()) == 1429
    assert stats["empty_pair_share"] == (4000 - 1429) / 4000


@pytest.mark.real_data
def test_real_classes_never_overlap_and_objects_outnumber_masks(real_subset_stats):
    stats, _ = real_subset_stats
    assert stats["overlapping_pixels"] == 0
    for c in "1234":
        assert stats["objects_per_class"][c] >= stats["masks_per_class"][c] > 0
    medians = {c: stats["area_quantiles"][c]["p50"] for c in "1234"}
    # Real class 4 patches are the largest masks, class 1 pits and class 2 marks the smallest.
    assert medians["4"] > medians["3"] > max(medians["1"], medians["2"])


@pytest.mark.real_data
def test_overlays_of_real_images(real_sample, tmp_path):
    labels = pd.read_csv(real_sample / "derived" / "saved_images_labels.csv", dtype=str,
                         keep_default_na=False)
    exact = labels[labels["label_status"].str.startswith("exact")]
    defect_free = labels[labels["has_defect"].isin(["0", "False", "false"])]
    folder = tmp_path / "real"
    (folder / "train_images").mkdir(parents=True)
    for image_id in [*exact["ImageId"], *defect_free["ImageId"]]:
        (folder / "train_images" / image_id).symlink_to(
            real_sample / "images" / "train" / image_id)
    rows = [(row.ImageId, c, getattr(row, f"rle_{c}")) for row in exact.itertuples()
            for c in (1, 2, 3, 4) if getattr(row, f"rle_{c}") not in ("", "?")]
    write_annotations(folder / "train.csv",
                      pd.DataFrame(rows, columns=["ImageId", "ClassId", "EncodedPixels"]))
    stats = run_eda(folder, tmp_path / "out", examples_per_class=2)
    expected = {str(c): sum(r[1] == c for r in rows) for c in (1, 2, 3, 4)}
    assert stats["images_per_class"] == expected and expected["2"] == 0
    assert stats["images"] == len(exact) + len(defect_free)
    assert stats["overlapping_pixels"] == 0
    assert "examples_class_3" in stats["figures"]
    assert set(stats["figures_skipped"]) == {"2"}
    assert (tmp_path / "out" / "examples_class_3.png").stat().st_size > 10_000


# ----- synthetic data and the command line --------------------------------------------------


def test_cli_on_synthetic_data_matches_an_independent_count(tiny_dataset, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "steel_keras", "eda", "--data", str(tiny_dataset),
         "--out", str(tmp_path), "--examples", "1"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "eda.json" in result.stdout and "train images" in result.stdout
    stats = json.loads((tmp_path / "eda.json").read_text())
    train_files = sorted(p.name for p in (tiny_dataset / "train_images").glob("*.jpg"))
    masks = pd.read_csv(tiny_dataset / "train.csv")
    assert stats["images"] == len(train_files) == 48
    assert stats["images_with_defects"] == masks["ImageId"].nunique()
    assert stats["images_per_class"] == {
        str(c): int((masks["ClassId"] == c).sum()) for c in (1, 2, 3, 4)}
    assert stats["empty_pair_share"] == pytest.approx(1 - len(masks) / (4 * 48))
    for name in stats["figures"].values():
        assert (tmp_path / name).stat().st_size > 0


def test_cli_missing_data_folder_is_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "steel_keras", "eda", "--data", str(tmp_path / "nope"),
         "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "nope" in result.stderr


def test_count_functions_are_the_eda_numbers(hand_folder):
    """class_balance, classes_per_image and empty_pair_share are what `steel-keras eda` prints."""
    ds = SteelDataset(hand_folder)
    stats = compute_eda(ds, count_objects=False)
    masks, ids = ds.masks_table, ds.train_image_ids
    assert {str(c): n for c, n in class_balance(masks).items()} == stats["images_per_class"]
    assert {str(k): n for k, n in classes_per_image(masks, ids).items()} == \
        stats["classes_per_image"]
    assert empty_pair_share(masks, len(ids)) == stats["empty_pair_share"]
    assert classes_per_image(masks.iloc[:0], ["b.jpg", "a.jpg", "b.jpg"]).tolist() == \
        [2, 0, 0, 0, 0]
    with pytest.raises(ValueError, match="cannot hold 4 masks"):
        empty_pair_share(masks, 0)
