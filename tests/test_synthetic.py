"""The synthetic dataset: Kaggle's layout and formats, determinism, statistics like the real data.

The statistics are measured on 400 generated images (320 train, 80 test) and compared with
the real train set's figures (``shared/reference/severstal_facts.md``) with tolerances a few
times the sampling noise at that size.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.ndimage import maximum_filter

from steel_keras.data.annotations import (
    Annotations,
    load_annotations,
    read_submission,
    write_submission,
)
from steel_keras.errors import DataError
from steel_keras.rle import decode_rle
from steel_keras.synthetic import (
    COMPARE_PNG,
    DEFAULT_SEED,
    DEFAULT_TEST,
    DEFAULT_TRAIN,
    IN_PROGRESS_FILE,
    MANIFEST_FILE,
    ensure_default_dataset,
    generate_dataset,
    is_synthetic_dataset,
    resolve_data_dir,
)
from steel_keras.synthetic.realism import (
    STATISTICS,
    compare_folders,
    format_comparison,
    image_statistics,
    jpeg_quality,
)

ID_PATTERN = re.compile(r"^[0-9a-f]{9}\.jpg$")
# Real train set: images per class 897 / 247 / 5,150 / 801 of 7,095 masks, 5,902 of 12,568
# images defect-free, 427 of 6,666 defective images multi-class, median mask areas per class.
REAL_CLASS_SHARE = {1: 0.126, 2: 0.035, 3: 0.726, 4: 0.113}
REAL_MEDIAN_AREA = {1: 3200, 2: 2900, 3: 10500, 4: 25000}


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "steel_keras", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def file_digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def stats_dataset(tmp_path_factory) -> Path:
    """400 images with the default seed: enough for the statistics, made once (~15-30 s)."""
    out = tmp_path_factory.mktemp("synthetic-stats") / "data"
    return generate_dataset(out, n_train=320, n_test=80, seed=DEFAULT_SEED, progress=False)


@pytest.fixture(scope="module")
def all_masks(stats_dataset) -> tuple[pd.DataFrame, list[str]]:
    """Train and test masks together (with their split), and every image id."""
    train = load_annotations(stats_dataset / "train.csv").table.assign(split="train")
    test = load_annotations(stats_dataset / "test_truth.csv").table.assign(split="test")
    ids = [
        p.name
        for split in ("train", "test")
        for p in (stats_dataset / f"{split}_images").glob("*.jpg")
    ]
    return pd.concat([train, test], ignore_index=True), ids


# ----------------------------------------------------------------------------- layout, formats


def test_layout_and_csv_formats(tiny_dataset):
    names = {p.name for p in tiny_dataset.iterdir()}
    assert {
        "train.csv",
        "test_truth.csv",
        "sample_submission.csv",
        "dataset_info.json",
        "train_images",
        "test_images",
    } <= names
    assert IN_PROGRESS_FILE not in names
    train = load_annotations(tiny_dataset / "train.csv")
    truth = load_annotations(tiny_dataset / "test_truth.csv")
    assert train.format == truth.format == "train"
    assert (tiny_dataset / "train.csv").read_text().splitlines()[
        0
    ] == "ImageId,ClassId,EncodedPixels"
    train_files = {p.name for p in (tiny_dataset / "train_images").glob("*.jpg")}
    test_files = {p.name for p in (tiny_dataset / "test_images").glob("*.jpg")}
    assert len(train_files) == 48 and len(test_files) == 12
    assert set(train.image_ids) <= train_files and set(truth.image_ids) <= test_files
    assert not train_files & test_files
    assert all(ID_PATTERN.match(name) for name in train_files | test_files)
    assert not list(tiny_dataset.rglob("*.tmp"))


def test_sample_submission_is_kaggles_current_format(tiny_dataset):
    lines = (tiny_dataset / "sample_submission.csv").read_text().splitlines()
    test_ids = sorted(p.name for p in (tiny_dataset / "test_images").glob("*.jpg"))
    assert lines[0] == "ImageId,EncodedPixels,ClassId"
    assert sorted(lines[1:]) == [f"{i},1 409600,0" for i in test_ids]
    parsed = read_submission(tiny_dataset / "sample_submission.csv")
    assert parsed.image_ids == test_ids and parsed.table.empty


def test_images_are_kaggle_like_jpegs(tiny_dataset):
    paths = sorted((tiny_dataset / "train_images").glob("*.jpg"))[:4]
    paths += sorted((tiny_dataset / "test_images").glob("*.jpg"))[:2]
    for path in paths:
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.mode == "RGB" and image.size == (1600, 256)
            pixels = np.asarray(image)
        assert np.array_equal(pixels[..., 0], pixels[..., 1])
        assert np.array_equal(pixels[..., 0], pixels[..., 2])
        assert 10 < pixels.mean() < 200 and pixels.std() > 3


def test_dataset_info(tiny_dataset):
    info = json.loads((tiny_dataset / "dataset_info.json").read_text())
    assert info["generator"] == "steel_keras.synthetic" and info["seed"] == 7
    assert (info["n_train"], info["n_test"]) == (48, 12)
    table = load_annotations(tiny_dataset / "train.csv").table
    counts = table["ClassId"].value_counts()
    assert info["train_masks_per_class"] == {str(c): int(counts.get(c, 0)) for c in (1, 2, 3, 4)}
    assert is_synthetic_dataset(tiny_dataset)


# ----------------------------------------------------------------------------- determinism


def test_same_seed_same_bytes_whatever_the_workers(tmp_path):
    one = generate_dataset(tmp_path / "a", 10, 4, seed=3, progress=False, workers=1)
    two = generate_dataset(tmp_path / "b", 10, 4, seed=3, progress=False, workers=2)
    assert file_digests(one) == file_digests(two)


def test_other_seed_other_data(tmp_path):
    one = generate_dataset(tmp_path / "a", 6, 2, seed=3, progress=False)
    two = generate_dataset(tmp_path / "b", 6, 2, seed=4, progress=False)
    assert (one / "train.csv").read_bytes() != (two / "train.csv").read_bytes()
    assert not {p.name for p in one.rglob("*.jpg")} & {p.name for p in two.rglob("*.jpg")}


def test_a_smaller_dataset_is_a_prefix_of_a_larger_one(tmp_path):
    small = generate_dataset(tmp_path / "small", 4, 1, seed=5, progress=False)
    large = generate_dataset(tmp_path / "large", 8, 2, seed=5, progress=False)
    small_files, large_files = file_digests(small), file_digests(large)
    images = {k: v for k, v in small_files.items() if k.endswith(".jpg")}
    assert images.items() <= large_files.items()


def test_regenerating_replaces_a_previous_dataset(tmp_path):
    out = generate_dataset(tmp_path / "d", 6, 2, seed=1, progress=False)
    generate_dataset(out, 3, 1, seed=2, progress=False)
    assert len(list((out / "train_images").glob("*.jpg"))) == 3
    assert json.loads((out / "dataset_info.json").read_text())["seed"] == 2


def test_refuses_a_foreign_folder_and_writes_nothing(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty and holds no synthetic dataset"):
        generate_dataset(tmp_path, 2, 1, seed=1, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_regenerating_deletes_only_the_files_it_wrote(tmp_path):
    out = generate_dataset(tmp_path / "d", 5, 2, seed=1, progress=False)
    old_images = {p.name for p in (out / "train_images").glob("*.jpg")}
    mine = out / "train_images" / "my_own_photo.jpg"
    mine.write_bytes(b"not a generated image")
    (out / "notes.txt").write_text("keep me")
    generate_dataset(out, 3, 1, seed=2, progress=False)
    new_images = {p.name for p in (out / "train_images").glob("*.jpg")} - {mine.name}
    assert mine.read_bytes() == b"not a generated image"
    assert (out / "notes.txt").read_text() == "keep me"
    assert len(new_images) == 3 and not new_images & old_images
    manifest = json.loads((out / MANIFEST_FILE).read_text())["files"]
    assert {f"train_images/{name}" for name in new_images} <= set(manifest)
    assert f"train_images/{mine.name}" not in manifest and "notes.txt" not in manifest


def test_refuses_to_replace_a_file_it_did_not_write(tmp_path):
    from steel_keras.synthetic.labels import image_ids

    out = generate_dataset(tmp_path / "d", 2, 0, seed=3, progress=False)
    train_ids, _ = image_ids(3, 4, 0)  # a larger run adds train_ids[2:] to the same prefix
    theirs = out / "train_images" / train_ids[3]
    theirs.write_bytes(b"someone else's")
    with pytest.raises(DataError, match=f"{train_ids[3]} exists and was not written"):
        generate_dataset(out, 4, 0, seed=3, progress=False)
    assert theirs.read_bytes() == b"someone else's"
    assert all((out / "train_images" / name).is_file() for name in train_ids[:2])


def test_replaces_a_dataset_of_an_older_version_without_a_manifest(tmp_path):
    out = generate_dataset(tmp_path / "d", 4, 1, seed=5, progress=False)
    info = json.loads((out / "dataset_info.json").read_text())
    (out / "dataset_info.json").write_text(json.dumps({**info, "generator_version": "2"}))
    (out / MANIFEST_FILE).unlink()  # as version 2 left it
    old_images = {p.name for p in (out / "train_images").glob("*.jpg")}
    mine = out / "train_images" / "added_by_hand.jpg"
    mine.write_bytes(b"x")
    generate_dataset(out, 2, 1, seed=6, progress=False)
    assert mine.read_bytes() == b"x"
    left = {p.name for p in (out / "train_images").glob("*.jpg")}
    assert not left & old_images and len(left - {mine.name}) == 2


def test_a_manifest_naming_files_outside_the_folder_is_refused(tmp_path):
    outside = tmp_path / "precious.txt"
    outside.write_text("keep")
    out = generate_dataset(tmp_path / "d", 2, 0, seed=1, progress=False)
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    manifest["files"].append("../precious.txt")
    (out / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="outside the dataset folder"):
        generate_dataset(out, 2, 0, seed=1, progress=False)
    assert outside.read_text() == "keep"


def test_an_unfinished_dataset_of_an_older_version_is_refused(tmp_path):
    (tmp_path / IN_PROGRESS_FILE).write_text("{}")  # version 2 marked folders like this
    (tmp_path / "train_images").mkdir()
    (tmp_path / "train_images" / "0123abcde.jpg").write_bytes(b"?")
    with pytest.raises(DataError, match="older steel-keras without a manifest"):
        generate_dataset(tmp_path, 1, 0, seed=1, progress=False)
    assert (tmp_path / "train_images" / "0123abcde.jpg").read_bytes() == b"?"


def test_rejects_no_images(tmp_path):
    with pytest.raises(DataError, match="at least one"):
        generate_dataset(tmp_path / "x", 0, 0, seed=1, progress=False)


def test_test_only_dataset(tmp_path):
    out = generate_dataset(tmp_path / "t", 0, 3, seed=1, progress=False)
    assert load_annotations(out / "train.csv").table.empty
    assert len(list((out / "test_images").glob("*.jpg"))) == 3


# ----------------------------------------------------------------------------- statistics


def test_defect_free_share(all_masks):
    table, ids = all_masks
    share = 1 - table["ImageId"].nunique() / len(ids)
    assert share == pytest.approx(5902 / 12568, abs=0.04)


def test_class_shares(all_masks):
    table, _ = all_masks
    shares = table["ClassId"].value_counts(normalize=True)
    for class_id, real in REAL_CLASS_SHARE.items():
        assert shares.get(class_id, 0.0) == pytest.approx(real, abs=max(0.03, 0.25 * real))


def test_multi_class_images(all_masks):
    table, _ = all_masks
    per_image = table.groupby("ImageId")["ClassId"].count()
    assert (per_image > 1).mean() == pytest.approx(427 / 6666, abs=0.03)
    assert (per_image > 2).sum() <= 2  # three classes: 2 in 12,568 real images


def test_classes_never_overlap(stats_dataset, all_masks):
    table, _ = all_masks
    for image_id, rows in table.groupby("ImageId"):
        if len(rows) > 1:
            total = sum(decode_rle(rle).astype(np.int32) for rle in rows["EncodedPixels"])
            assert total.max() == 1, image_id


def test_median_mask_areas(all_masks):
    table, _ = all_masks
    areas = table["EncodedPixels"].map(lambda rle: sum(map(int, rle.split()[1::2])))
    for class_id, real in REAL_MEDIAN_AREA.items():
        mine = areas[table["ClassId"] == class_id]
        low, high = (0.6, 1.6) if len(mine) >= 15 else (0.35, 2.5)  # class 2: a handful
        assert low * real <= mine.median() <= high * real, (class_id, len(mine), mine.median())


def test_masks_are_coarse_polygons(all_masks):
    table, _ = all_masks
    sample = table.groupby("ClassId").head(5)
    for rle in sample["EncodedPixels"]:
        mask = decode_rle(rle)
        # Straight-edged polygons: few runs per column compared with the pixel count.
        assert len(rle.split()) // 2 < mask.sum() / 3


def test_all_empty_submission_scores_like_the_leaderboard(stats_dataset, tmp_path):
    from steel_keras.metrics.competition import score_files

    test_ids = [p.name for p in (stats_dataset / "test_images").glob("*.jpg")]
    truth = load_annotations(stats_dataset / "test_truth.csv").table
    empty_pairs = 1 - len(truth) / (4 * len(test_ids))
    assert empty_pairs == pytest.approx(0.856, abs=0.02)
    empty = write_submission(tmp_path / "empty.csv", Annotations.empty(test_ids))
    score = score_files(empty, stats_dataset / "test_truth.csv").competition_dice
    assert score == pytest.approx(empty_pairs)


def _contrast_ratios(folder: Path, table: pd.DataFrame) -> np.ndarray:
    """Per mask: |mean inside - mean of a 12 px ring of clean steel| / std of that ring."""
    ratios = []
    for image_id, rows in list(table.groupby("ImageId"))[:60]:
        with Image.open(folder / "train_images" / image_id) as image:
            pixels = np.asarray(image.convert("L"), dtype=np.float32)
        masks = [decode_rle(rle).astype(bool) for rle in rows["EncodedPixels"]]
        defect = np.any(masks, axis=0)
        for mask in masks:
            ring = maximum_filter(mask, size=25) & ~defect  # separable: fast
            if ring.sum() > 200:
                ratios.append(abs(pixels[mask].mean() - pixels[ring].mean()) / pixels[ring].std())
    return np.array(ratios)


def test_some_defects_are_faint_and_some_stand_out(stats_dataset, all_masks):
    table, _ = all_masks
    ratios = _contrast_ratios(stats_dataset, table[table["split"] == "train"])
    assert len(ratios) >= 40
    assert (ratios < 0.25).mean() >= 0.15  # no brighter or darker on average than noise
    assert (ratios > 0.75).mean() >= 0.05  # clearly visible


# ----------------------------------------------------------------------------- default dataset


def test_resolve_data_dir_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist.*make-dataset.*download"):
        resolve_data_dir(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="neither train.csv nor test_images"):
        resolve_data_dir(tmp_path / "empty")
    (tmp_path / "empty" / "test_images").mkdir()
    assert resolve_data_dir(str(tmp_path / "empty")) == tmp_path / "empty"


def test_ensure_default_dataset_makes_once_and_then_reuses(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STEEL_KERAS_DATA", str(tmp_path / "default"))
    path = ensure_default_dataset(progress=False, n_train=3, n_test=1, seed=9)
    assert path == tmp_path / "default" and (path / "train.csv").is_file()
    assert "generating 3 train and 1 test images" in capsys.readouterr().err
    stamp = (path / "dataset_info.json").stat().st_mtime_ns
    assert resolve_data_dir(None) == path
    assert (path / "dataset_info.json").stat().st_mtime_ns == stamp
    assert capsys.readouterr().err == ""


def test_ensure_default_dataset_finishes_an_interrupted_run(tmp_path, monkeypatch):
    monkeypatch.setenv("STEEL_KERAS_DATA", str(tmp_path / "default"))
    path = generate_dataset(tmp_path / "default", 3, 1, seed=9, progress=False)
    (path / IN_PROGRESS_FILE).write_text("{}")  # as a killed run leaves it
    (path / "train.csv").unlink()
    ensure_default_dataset(progress=False, n_train=2, n_test=1, seed=9)
    assert not (path / IN_PROGRESS_FILE).exists()
    assert len(list((path / "train_images").glob("*.jpg"))) == 2


# ----------------------------------------------------------------------------- command line


def test_cli_defaults_match_the_library():
    from steel_keras.cli import make_dataset

    assert (make_dataset.DEFAULT_TRAIN, make_dataset.DEFAULT_TEST, make_dataset.DEFAULT_SEED) == (
        DEFAULT_TRAIN,
        DEFAULT_TEST,
        DEFAULT_SEED,
    )


def test_cli_makes_a_dataset(tmp_path):
    out = tmp_path / "cli"
    result = run_cli(
        "make-dataset", "--out", str(out), "--train", "3", "--test", "1", "--seed", "4", "--quiet"
    )
    assert result.returncode == 0, result.stderr
    assert f"wrote 3 train and 1 test images (seed 4) to {out}" in result.stdout
    assert len(list((out / "train_images").glob("*.jpg"))) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--train", "-5"], "-5 is negative"),
        (["--test", "x"], "'x' is not an integer"),
        (["--train", "0", "--test", "0"], "both 0"),
        (["--seed", "-1"], "-1 is negative"),
    ],
)
def test_cli_bad_counts_are_one_line_errors(tmp_path, args, message):
    result = run_cli("make-dataset", "--out", str(tmp_path / "x"), *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_cli_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    result = run_cli("make-dataset", "--out", str(tmp_path), "--train", "1", "--test", "0")
    assert result.returncode == 2 and "holds no synthetic dataset" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_cli_compares_with_a_folder_of_images(tiny_dataset, tmp_path):
    """The comparison runs end to end; any folder of JPEGs stands in for the real images."""
    out, png = tmp_path / "cli", tmp_path / "side.png"
    result = run_cli(
        "make-dataset", "--out", str(out), "--train", "6", "--test", "0", "--quiet",
        "--compare-real", str(tiny_dataset), "--compare-png", str(png),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "| pixel standard deviation |" in result.stdout
    assert "real median [IQR], 48 images | synthetic median [IQR], 6 images" in result.stdout
    assert re.search(r"\d+ of 11 synthetic medians inside the real IQR", result.stdout)
    with Image.open(png) as image:
        assert image.format == "PNG" and image.width == 2 * 800 + 8
    default = run_cli(
        "make-dataset", "--out", str(out), "--train", "2", "--test", "0", "--quiet",
        "--compare-real", str(tiny_dataset / "train_images"),
    )  # fmt: skip
    assert default.returncode == 0, default.stderr
    assert (out / COMPARE_PNG).is_file()
    assert COMPARE_PNG in json.loads((out / MANIFEST_FILE).read_text())["files"]


def test_cli_compare_without_images_fails_before_generating(tmp_path):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "never"
    result = run_cli(
        "make-dataset", "--out", str(out), "--train", "2", "--test", "0",
        "--compare-real", str(tmp_path / "empty"),
    )  # fmt: skip
    assert result.returncode == 2 and "holds no .jpg or .png image" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


# ----------------------------------------------------------------------------- realism


def test_image_statistics_of_known_images():
    rows = 128 + 120 * np.cos(2 * np.pi * 2 * np.arange(256) / 256)  # two slow bands
    bands = np.tile(rows[:, None], (1, 1600))
    stats = image_statistics(bands)
    assert stats["row_banding"] == pytest.approx(bands.std())
    assert stats["column_banding"] == pytest.approx(0.0, abs=1e-9)
    assert stats["bright_share"] == pytest.approx(100 * (bands > 200).mean())
    assert stats["dark_share"] == pytest.approx(100 * (bands < 40).mean())
    assert stats["high_frequency"] < 1e-9 and stats["gradient_ratio"] == 0.0
    stripes = np.tile([0.0, 255.0], (256, 800))  # one-pixel columns: all energy at Nyquist
    stats = image_statistics(stripes)
    assert stats["high_frequency"] == pytest.approx(1.0)
    assert stats["local_contrast"] == pytest.approx(255 * np.sqrt(20) / 9, rel=1e-3)
    assert stats["column_banding"] == pytest.approx(127.5) and stats["row_banding"] == 0.0
    spots = np.full((256, 1600), 100.0)
    spots[::16, ::16] = 255.0
    assert image_statistics(spots)["skewness"] > 3 > -3 > image_statistics(255 - spots)["skewness"]


def test_jpeg_quality_is_read_from_the_quantisation_table(tmp_path):
    gray = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    for quality in (75, 90, 95):
        gray.convert("RGB").save(tmp_path / f"q{quality}.jpg", quality=quality)
        assert jpeg_quality(tmp_path / f"q{quality}.jpg") == quality
    gray.save(tmp_path / "lossless.png")
    assert np.isnan(jpeg_quality(tmp_path / "lossless.png"))


def test_compare_folders_against_itself_is_inside_everywhere(tiny_dataset):
    comparison = compare_folders(tiny_dataset, tiny_dataset / "train_images")
    assert comparison.n_real == comparison.n_synthetic == 48
    assert comparison.outside == [] and comparison.real == comparison.synthetic
    table = format_comparison(comparison)
    assert table.count("\n") == 2 + len(STATISTICS) and "**no**" not in table


def test_compare_folders_errors_name_the_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        compare_folders(tmp_path / "missing", tmp_path)
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "a.txt").write_text("x")
    with pytest.raises(DataError, match=r"text holds no \.jpg or \.png image"):
        compare_folders(tmp_path / "text", tmp_path)


@pytest.mark.real_data
def test_synthetic_statistics_lie_inside_the_real_interquartile_range(real_sample, stats_dataset):
    """Each statistic's median over 100 synthetic train images is inside the real images' IQR."""
    real = real_sample / "images" / "train"
    comparison = compare_folders(real, stats_dataset, max_synthetic=100)
    assert comparison.n_real >= 20 and comparison.n_synthetic == 100
    assert comparison.outside == [], format_comparison(comparison)
