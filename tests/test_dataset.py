"""SteelDataset on real folders: tiny generated JPEGs, error cases, the real sample via symlinks."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from steel_keras.data import SteelDataset, open_dataset, read_image
from steel_keras.data.annotations import Annotations, write_annotations, write_submission
from steel_keras.data.dataset import defect_free_ids, per_image_table, rle_area
from steel_keras.data.images import downscale_mask
from steel_keras.errors import DataError
from steel_keras.paths import DATA_ENV
from steel_keras.rle import decode_rle, encode_rle

H, W = 256, 1600
DARK, BRIGHT = 40, 220


def rect(top: int, left: int, height: int, width: int) -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[top : top + height, left : left + width] = 1
    return mask


def save_jpeg(path: Path, gray: np.ndarray) -> None:
    Image.fromarray(gray).convert("RGB").save(path, quality=95)


def make_folder(
    root: Path,
    masks: dict[str, dict[int, np.ndarray]],
    *,
    fmt: str = "train",
    test_ids: tuple[str, ...] = (),
    sample_format: str | None = "submission",
) -> Path:
    """A Kaggle-layout folder: dark images, bright wherever the image has a mask."""
    (root / "train_images").mkdir(parents=True)
    for image_id, per_class in masks.items():
        gray = np.full((H, W), DARK, np.uint8)
        for mask in per_class.values():
            gray[mask.astype(bool)] = BRIGHT
        save_jpeg(root / "train_images" / image_id, gray)
    rows = [(i, c, encode_rle(m)) for i, per in masks.items() for c, m in per.items()]
    table = pd.DataFrame(rows, columns=["ImageId", "ClassId", "EncodedPixels"])
    if fmt == "original":
        write_submission(root / "train.csv", Annotations(table, list(masks)), format="original")
    else:
        write_annotations(root / "train.csv", table)
    if test_ids:
        (root / "test_images").mkdir()
        for image_id in test_ids:
            save_jpeg(root / "test_images" / image_id, np.full((H, W), DARK, np.uint8))
    if sample_format is not None:
        write_submission(
            root / "sample_submission.csv", Annotations.empty(test_ids), format=sample_format
        )
    return root


MASKS = {
    "00000000a.jpg": {},
    "00000000b.jpg": {3: rect(10, 100, 60, 300)},
    "00000000c.jpg": {1: rect(0, 0, 4, 4), 3: rect(100, 800, 100, 400)},
    "00000000d.jpg": {},
    "00000000e.jpg": {4: rect(200, 1500, 56, 100)},
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("folders")
    return {
        fmt: make_folder(
            base / fmt,
            MASKS,
            fmt=fmt,
            test_ids=("t2.jpg", "t1.jpg"),
            sample_format="original" if fmt == "original" else "submission",
        )
        for fmt in ("original", "train")
    }


# ----- ids, tables ---------------------------------------------------------------------------


def test_both_csv_formats_give_the_same_dataset(folders):
    original, new = SteelDataset(folders["original"]), SteelDataset(folders["train"])
    assert original.annotations.format == "original" and new.annotations.format == "train"
    assert original.train_image_ids == new.train_image_ids == sorted(MASKS)
    pd.testing.assert_frame_equal(original.masks_table, new.masks_table)
    pd.testing.assert_frame_equal(original.per_image_table(), new.per_image_table())
    assert original.test_image_ids == ["t1.jpg", "t2.jpg"]
    assert original.submission_format == "original" and new.submission_format == "submission"


def test_per_image_table_and_defect_free_ids_of_a_long_table(folders):
    ds = SteelDataset(folders["train"])
    masks, ids = ds.masks_table, ds.train_image_ids
    pd.testing.assert_frame_equal(
        per_image_table(masks, [*reversed(ids), ids[0]]), ds.per_image_table()
    )
    free = defect_free_ids(masks, ids)
    table = ds.per_image_table()
    assert free == table.loc[~table["has_defect"], "ImageId"].tolist() and free
    empty = per_image_table(masks.iloc[:0], ["b.jpg", "a.jpg"])
    assert empty["ImageId"].tolist() == ["a.jpg", "b.jpg"] and not empty["has_defect"].any()
    assert empty["area_4"].dtype == np.int64


def test_per_image_table(folders):
    table = SteelDataset(folders["train"]).per_image_table().set_index("ImageId")
    assert list(table.columns) == [
        "has_defect",
        "classes",
        "n_classes",
        "area_1",
        "area_2",
        "area_3",
        "area_4",
    ]
    assert (
        table.loc["00000000a.jpg", "classes"] == "" and not table.loc["00000000a.jpg", "has_defect"]
    )
    assert table.loc["00000000c.jpg", "classes"] == "1 3"
    assert table.loc["00000000c.jpg", "n_classes"] == 2
    assert table.loc["00000000c.jpg", "area_1"] == 16
    assert table.loc["00000000c.jpg", "area_3"] == 100 * 400
    assert table["n_classes"].dtype == np.int64 and table["has_defect"].dtype == bool
    for image_id, per in MASKS.items():
        for c in (1, 2, 3, 4):
            expected = int(per[c].sum()) if c in per else 0
            assert table.loc[image_id, f"area_{c}"] == expected


def test_rle_area_sums_run_lengths():
    assert rle_area("1 3 10 7") == 10 and rle_area("") == 0 and rle_area(None) == 0
    mask = rect(3, 5, 17, 9)
    assert rle_area(encode_rle(mask)) == mask.sum()


def test_csv_only_folder_takes_ids_from_the_csv(tmp_path):
    rows = [("a.jpg", 1, "1 3")]
    write_submission(
        tmp_path / "train.csv",
        Annotations(pd.DataFrame(rows, columns=["ImageId", "ClassId", "EncodedPixels"]),
                    ["a.jpg", "b.jpg"]),
        format="original",
    )
    ds = SteelDataset(tmp_path)
    assert ds.train_image_ids == ["a.jpg", "b.jpg"]
    assert ds.test_image_ids == [] and ds.sample_submission is None
    assert ds.submission_format == "submission" and ds.test_truth is None
    assert "2 images, 1 with defects" in ds.describe()


# ----- images and masks ----------------------------------------------------------------------


def test_load_image_and_masks_are_aligned(folders):
    ds = SteelDataset(folders["train"])
    image = ds.load_image("00000000c.jpg")
    masks = ds.load_masks("00000000c.jpg")
    assert image.shape == (H, W) and image.dtype == np.uint8
    assert masks.shape == (H, W, 4) and masks.dtype == np.uint8
    assert np.array_equal(masks[..., 2], MASKS["00000000c.jpg"][3])
    assert not masks[..., 1].any()
    fg = masks.any(axis=-1)
    assert image[fg].mean() > 200 and image[~fg].mean() < 60
    assert np.array_equal(
        ds.load_masks("00000000a.jpg", size=(64, 400)), np.zeros((64, 400, 4), np.uint8)
    )


def test_grayscale_is_the_first_channel(folders):
    path = folders["train"] / "train_images" / "00000000b.jpg"
    rgb = np.asarray(Image.open(path).convert("RGB"))
    assert np.array_equal(read_image(path), rgb[..., 0])


@pytest.mark.parametrize("size", [(128, 800), (64, 400), (100, 700)])
def test_resizing_is_area_and_keeps_masks_on_the_image(folders, size):
    ds = SteelDataset(folders["train"])
    full_image = ds.load_image("00000000b.jpg").astype(np.float32)
    image = ds.load_image("00000000b.jpg", size=size)
    masks = ds.load_masks("00000000b.jpg", size=size)
    assert image.shape == size and masks.shape == (*size, 4)
    area = cv2.resize(full_image, size[::-1], interpolation=cv2.INTER_AREA)
    assert np.abs(image - area).max() <= 1.0
    share = cv2.resize(
        MASKS["00000000b.jpg"][3].astype(np.float32), size[::-1], interpolation=cv2.INTER_AREA
    )
    assert np.array_equal(masks[..., 2], (share >= 0.5).astype(np.uint8))
    inside = masks[..., 2].astype(bool)
    assert image[inside].mean() > 190 and image[~inside].mean() < 70


@pytest.mark.parametrize("size", [(128, 800), (64, 400), (32, 200), (128, 400), (100, 700)])
def test_downscale_mask_keeps_pixels_at_least_half_covered(size):
    rng = np.random.default_rng(sum(size))
    for density in (0.1, 0.5, 0.9):
        mask = (rng.random((H, W)) < density).astype(np.uint8)
        mask[:8, :8] = [[1, 0] * 4, [0, 1] * 4] * 4  # exactly half covered at every factor
        share = cv2.resize(mask.astype(np.float64), size[::-1], interpolation=cv2.INTER_AREA)
        expected = (share >= 0.5 - 1e-9).astype(np.uint8)
        result = downscale_mask(mask, size)
        assert result.dtype == np.uint8 and np.array_equal(result, expected)
    assert np.array_equal(downscale_mask(mask, (H, W)), mask)


def test_half_covered_pixels_count_as_foreground(folders):
    ds = SteelDataset(folders["train"])
    small = ds.load_masks("00000000c.jpg", size=(128, 800))
    assert small[:2, :2, 0].all() and small[..., 0].sum() == 4  # the 4x4 square -> 2x2


def test_test_truth_gives_test_masks(tmp_path):
    root = make_folder(tmp_path / "d", {"a.jpg": {}}, test_ids=("t.jpg",))
    ds = SteelDataset(root)
    with pytest.raises(DataError, match="test_truth.csv: file not found"):
        ds.load_masks("t.jpg", split="test")
    write_annotations(
        root / "test_truth.csv",
        pd.DataFrame([("t.jpg", 2, "1 3")], columns=["ImageId", "ClassId", "EncodedPixels"]),
    )
    ds = SteelDataset(root)
    assert ds.load_masks("t.jpg", split="test")[:3, 0, 1].tolist() == [1, 1, 1]
    assert ds.class_labels(["t.jpg"], split="test").tolist() == [[0, 1, 0, 0]]
    assert ds.load_image("t.jpg", split="test").shape == (H, W)


# ----- errors --------------------------------------------------------------------------------


def test_missing_folder_file_and_csv(tmp_path):
    with pytest.raises(DataError, match="nowhere: no such folder.*make-dataset"):
        SteelDataset(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="is a file"):
        SteelDataset(tmp_path / "file")
    with pytest.raises(DataError, match="train.csv: file not found"):
        _ = SteelDataset(tmp_path).train_image_ids
    with pytest.raises(DataError, match="split must be one of"):
        SteelDataset(tmp_path).image_path("a.jpg", "val")


def test_empty_train_images(tmp_path):
    root = make_folder(tmp_path / "d", {})
    with pytest.raises(DataError, match="train_images: no images"):
        _ = SteelDataset(root).train_image_ids


def test_csv_id_without_image_file(tmp_path):
    root = make_folder(tmp_path / "d", {"a.jpg": {}, "b.jpg": {1: rect(0, 0, 5, 5)}})
    (root / "train_images" / "b.jpg").unlink()
    with pytest.raises(DataError, match=r"train.csv: 1 image\(s\).*no file in .*b.jpg"):
        _ = SteelDataset(root).train_image_ids


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        ("garbage", "not a readable image"),
        ("truncated", "not a readable image"),
        ("small", r"is 800x256 \(width x height\); expected 1600x256"),
        ("missing", "image file not found"),
    ],
)
def test_bad_image_files_name_the_file(tmp_path, damage, match):
    root = make_folder(tmp_path / "d", {"a.jpg": {}})
    path = root / "train_images" / "a.jpg"
    if damage == "garbage":
        path.write_bytes(b"\x00not a jpeg" * 100)
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    elif damage == "small":
        save_jpeg(path, np.zeros((256, 800), np.uint8))
    else:
        path.unlink()
    with pytest.raises(DataError, match=match) as info:
        SteelDataset(root).load_image("a.jpg", size=(128, 800))
    assert str(path) in str(info.value)


def test_unknown_ids_raise_instead_of_giving_empty_masks(folders):
    ds = SteelDataset(folders["train"])
    with pytest.raises(DataError, match="'nope.jpg' is not a train image of"):
        ds.load_masks("nope.jpg")
    with pytest.raises(DataError, match=r"1 id\(s\) are not train images.*nope.jpg"):
        ds.check_ids(["00000000a.jpg", "nope.jpg"])
    ds.check_ids(ds.train_image_ids)


def test_bad_size_argument(folders):
    with pytest.raises(DataError, match="size must be"):
        SteelDataset(folders["train"]).load_image("00000000a.jpg", size=(0, 10))


# ----- split ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def many(tmp_path_factory) -> SteelDataset:
    """A CSV-only folder of 200 images with known class combinations (original format)."""
    root = tmp_path_factory.mktemp("many")
    combos = [()] * 90 + [(3,)] * 70 + [(1,)] * 20 + [(1, 3)] * 10 + [(4,)] * 8 + [(2,)]
    combos += [(3, 4)]
    rows = [(f"{k:09x}.jpg", c, "1 3") for k, cs in enumerate(combos) for c in cs]
    write_submission(
        root / "train.csv",
        Annotations(pd.DataFrame(rows, columns=["ImageId", "ClassId", "EncodedPixels"]),
                    [f"{k:09x}.jpg" for k in range(len(combos))]),
        format="original",
    )
    return SteelDataset(root)


def test_split_is_stratified_and_complete(many):
    train, val = many.split(0.2, seed=0)
    assert sorted(train + val) == many.train_image_ids and not set(train) & set(val)
    assert len(val) == 40 and train == sorted(train) and val == sorted(val)
    classes = many.per_image_table().set_index("ImageId")["classes"]
    counts = classes[val].value_counts()
    assert counts[""] == 18 and counts["3"] == 14 and counts["1"] == 4 and counts["1 3"] == 2
    assert classes[train].value_counts()["2"] == 1  # a single image stays in train
    assert "3 4" in set(classes[train])


def test_split_is_deterministic_by_seed(many):
    assert many.split(0.2, seed=1) == many.split(0.2, seed=1)
    assert many.split(0.2, seed=1) != many.split(0.2, seed=2)
    assert many.split(0.0)[1] == []


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_split_rejects_bad_fractions(many, fraction):
    with pytest.raises(DataError, match="val_fraction must be in"):
        many.split(fraction)


# ----- open_dataset, the synthetic fixture, the real sample ----------------------------------


def test_open_dataset(folders, monkeypatch):
    ds = open_dataset(folders["train"])
    assert open_dataset(ds) is ds and ds.root == folders["train"]
    monkeypatch.setenv(DATA_ENV, str(folders["original"]))
    assert open_dataset().root == folders["original"]
    assert "5 images, 3 with defects" in open_dataset().describe()


def test_synthetic_dataset(tiny_dataset):
    ds = SteelDataset(tiny_dataset)
    assert len(ds.train_image_ids) == 48 and len(ds.test_image_ids) == 12
    assert ds.test_truth is not None and ds.sample_submission is not None
    table = ds.per_image_table()
    assert len(table) == 48 and table["has_defect"].any() and not table["has_defect"].all()
    image_id = table.loc[table["has_defect"], "ImageId"].iloc[0]
    masks = ds.load_masks(image_id, size=(128, 800))
    assert ds.load_image(image_id, size=(128, 800)).shape == (128, 800)
    areas = table.set_index("ImageId").loc[image_id, ["area_1", "area_2", "area_3", "area_4"]]
    assert np.array_equal(masks.any(axis=(0, 1)), areas.to_numpy() > 0)


@pytest.fixture(scope="module")
def real_folder(real_sample, tmp_path_factory) -> tuple[SteelDataset, pd.DataFrame]:
    """The 23 real images, symlinked into a Kaggle layout, with the exact labels we have."""
    root = tmp_path_factory.mktemp("real") / "severstal"
    (root / "train_images").mkdir(parents=True)
    for image in sorted((real_sample / "images" / "train").glob("*.jpg")):
        (root / "train_images" / image.name).symlink_to(image)
    labels = pd.read_csv(
        real_sample / "derived/saved_images_labels.csv", dtype=str, keep_default_na=False
    )
    labels = labels[labels["label_status"].str.startswith("exact")]
    rows = [
        (r["ImageId"], c, r[f"rle_{c}"])
        for _, r in labels.iterrows()
        for c in (1, 2, 3, 4)
        if r[f"rle_{c}"]
    ]
    write_annotations(
        root / "train.csv", pd.DataFrame(rows, columns=["ImageId", "ClassId", "EncodedPixels"])
    )
    return SteelDataset(root), labels


@pytest.mark.real_data
def test_real_images_load_as_their_first_channel(real_folder):
    ds, _ = real_folder
    assert len(ds.train_image_ids) == 23
    for image_id in ds.train_image_ids:
        rgb = np.asarray(Image.open(ds.image_path(image_id)).convert("RGB"))
        assert np.array_equal(ds.load_image(image_id), rgb[..., 0]), image_id


@pytest.mark.real_data
@pytest.mark.parametrize("size", [None, (128, 800)])
def test_real_masks_lie_on_the_defects(real_folder, size):
    """Texture is stronger inside the real masks than inside flipped or shifted copies."""
    ds, labels = real_folder
    assert len(labels) == 6
    for image_id in labels["ImageId"]:
        masks = ds.load_masks(image_id, size=size)
        full = ds.load_masks(image_id)
        for c in (1, 2, 3, 4):
            rle = labels.set_index("ImageId").loc[image_id, f"rle_{c}"]
            assert np.array_equal(full[..., c - 1], decode_rle(rle))
        image = ds.load_image(image_id, size=size).astype(np.float32)
        k = 31 if size is None else 15
        detail = np.abs(image - cv2.blur(image, (k, k)))
        mask = masks.any(axis=-1)

        def contrast(m: np.ndarray, detail: np.ndarray = detail) -> float:
            return float(detail[m].mean() / detail[~m].mean())

        controls = [mask[::-1], mask[:, ::-1], np.roll(mask, mask.shape[1] // 4, axis=1)]
        assert contrast(mask) > max(contrast(m) for m in controls), image_id
