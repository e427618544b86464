"""Pipelines and augmentation: shapes, dtypes, masks that stay on the image, determinism."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from steel_keras.data import SteelDataset
from steel_keras.data.annotations import write_annotations
from steel_keras.data.augment import make_augmentation
from steel_keras.data.tfdata import (
    SampleLoader,
    classification_dataset,
    load_arrays,
    per_class_ids,
    segmentation_dataset,
)
from steel_keras.errors import DataError
from steel_keras.rle import encode_rle

tf = pytest.importorskip("tensorflow")

H, W = 256, 1600
SIZE = (64, 400)
# (class, top, left, height, width) per image, on multiples of 4 so that 64 x 400 is exact.
LAYOUT: list[list[tuple[int, int, int, int, int]]] = [
    [],
    [(3, 16, 100, 60, 300)],
    [(1, 0, 0, 8, 8), (3, 100, 800, 100, 400)],
    [],
    [(4, 200, 1480, 56, 120)],
    [(3, 40, 40, 200, 200)],
    [(2, 120, 600, 40, 40)],
    [],
    [(3, 0, 1200, 256, 64)],
    [(1, 60, 300, 40, 80), (4, 160, 900, 80, 200)],
    [],
]


def build_folder(root: Path) -> SteelDataset:
    """Dark steel (40) with bright (220) rectangles exactly where the masks are."""
    (root / "train_images").mkdir(parents=True)
    rows = []
    for k, rects in enumerate(LAYOUT):
        image_id = f"{k:09x}.jpg"
        gray = np.full((H, W), 40, np.uint8)
        for class_id, top, left, height, width in rects:
            mask = np.zeros((H, W), np.uint8)
            mask[top : top + height, left : left + width] = 1
            gray[mask == 1] = 220
            rows.append((image_id, class_id, encode_rle(mask)))
        Image.fromarray(gray).convert("RGB").save(root / "train_images" / image_id, quality=95)
    write_annotations(
        root / "train.csv", pd.DataFrame(rows, columns=["ImageId", "ClassId", "EncodedPixels"])
    )
    return SteelDataset(root)


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> SteelDataset:
    return build_folder(tmp_path_factory.mktemp("pipelines") / "data")


def collect(dataset) -> tuple[np.ndarray, np.ndarray]:
    batches = list(dataset.as_numpy_iterator())
    return (np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]))


def assert_masks_on_bright_pixels(images: np.ndarray, masks: np.ndarray) -> None:
    bright = images[..., 0] > 0.5
    assert np.array_equal(bright, masks.max(axis=-1) > 0.5)


# ----- shapes and dtypes ---------------------------------------------------------------------


def test_classification_batches(ds):
    ids = ds.train_image_ids
    batches = list(classification_dataset(ds, ids, image_size=SIZE, batch_size=4))
    assert [len(b[0]) for b in batches] == [4, 4, 3]
    images, labels = batches[0]
    assert images.shape == (4, *SIZE, 1) and images.dtype == tf.float32
    assert labels.shape == (4, 1) and labels.dtype == tf.float32
    x, y = collect(classification_dataset(ds, ids, image_size=SIZE, target="multilabel"))
    assert 0 <= x.min() and x.max() <= 1 and y.shape == (len(ids), 4)
    assert np.array_equal(y, ds.class_labels(ids))
    _, binary = collect(classification_dataset(ds, ids, image_size=SIZE))
    assert binary[:, 0].tolist() == [float(bool(r)) for r in LAYOUT]


def test_segmentation_batches_keep_masks_on_the_image(ds):
    x, y = collect(segmentation_dataset(ds, ds.train_image_ids, image_size=SIZE, batch_size=3))
    assert x.shape == (len(LAYOUT), *SIZE, 1) and y.shape == (len(LAYOUT), *SIZE, 4)
    assert x.dtype == y.dtype == np.float32 and set(np.unique(y)) <= {0.0, 1.0}
    assert_masks_on_bright_pixels(x, y)
    one = collect(segmentation_dataset(ds, ds.train_image_ids, image_size=SIZE, class_id=3))[1]
    assert one.shape == (len(LAYOUT), *SIZE, 1) and np.array_equal(one[..., 0], y[..., 2])


def test_full_size_batches(ds):
    images, masks = next(
        iter(segmentation_dataset(ds, ds.train_image_ids[:2], image_size=(256, 1600)))
    )
    assert images.shape == (2, 256, 1600, 1) and masks.shape == (2, 256, 1600, 4)


def test_load_arrays_match_the_pipeline(ds):
    ids = ds.train_image_ids
    x, y = load_arrays(ds, ids, SIZE)
    px, py = collect(segmentation_dataset(ds, ids, image_size=SIZE))
    assert np.array_equal(x, px) and np.array_equal(y, py)
    cx, cy = load_arrays(ds, ids, SIZE, kind="classification", target="multilabel")
    assert np.array_equal(cx, x) and cy.shape == (len(ids), 4)


def test_cache_gives_the_same_batches(ds):
    ids = ds.train_image_ids
    cached = segmentation_dataset(ds, ids, image_size=SIZE, cache=True)
    first, second = collect(cached), collect(cached)
    plain = collect(segmentation_dataset(ds, ids, image_size=SIZE))
    for a, b, c in zip(first, second, plain, strict=True):
        assert np.array_equal(a, b) and np.array_equal(a, c)


# ----- augmentation --------------------------------------------------------------------------


def test_flips_move_masks_with_the_image(ds):
    ids = ds.train_image_ids
    plain_x, plain_y = collect(segmentation_dataset(ds, ids, image_size=SIZE))
    flip = make_augmentation(p=1.0, brightness_contrast=False)
    x, y = collect(segmentation_dataset(ds, ids, image_size=SIZE, augment=flip))
    assert np.array_equal(x, plain_x[:, ::-1, ::-1]) and np.array_equal(y, plain_y[:, ::-1, ::-1])


def test_random_augmentation_keeps_alignment_and_varies(ds):
    ids = ds.train_image_ids
    augment = make_augmentation(p=0.5, brightness_contrast=False)
    plain_x = collect(segmentation_dataset(ds, ids, image_size=SIZE))[0]
    x, y = collect(segmentation_dataset(ds, ids, image_size=SIZE, augment=augment))
    assert_masks_on_bright_pixels(x, y)
    changed = [not np.array_equal(a, b) for a, b in zip(x, plain_x, strict=True) if b.std() > 0]
    assert any(changed) and not all(changed)


def test_brightness_contrast_changes_the_image_only(ds):
    ids = ds.train_image_ids
    augment = make_augmentation(hflip=False, vflip=False, p=1.0)
    plain_x, plain_y = collect(segmentation_dataset(ds, ids, image_size=SIZE))
    x, y = collect(segmentation_dataset(ds, ids, image_size=SIZE, augment=augment))
    assert np.array_equal(y, plain_y) and not np.array_equal(x, plain_x)
    assert 0 <= x.min() and x.max() <= 1


def test_crops_keep_alignment(ds):
    crop = (32, 128)
    pipeline = segmentation_dataset(
        ds, ds.train_image_ids, image_size=SIZE, crop=crop, augment=True, shuffle=True
    )
    x, y = collect(pipeline)
    assert x.shape == (len(LAYOUT), *crop, 1) and y.shape == (len(LAYOUT), *crop, 4)
    # Brightness and contrast are on: compare each crop with its own midpoint.
    for image, masks in zip(x, y, strict=True):
        fg = masks.max(axis=-1) > 0.5
        if fg.any() and not fg.all():
            assert image[fg, 0].min() > image[~fg, 0].max()


def test_same_seed_same_batches_new_epoch_new_batches(ds):
    ids = ds.train_image_ids

    def make(seed: int):
        return segmentation_dataset(
            ds, ids, image_size=SIZE, augment=True, shuffle=True, seed=seed, crop=(32, 200)
        )

    a, b = make(5), make(5)
    first_a, first_b = collect(a), collect(b)
    assert all(np.array_equal(p, q) for p, q in zip(first_a, first_b, strict=True))
    second_a = collect(a)
    assert not np.array_equal(first_a[0], second_a[0])
    assert np.array_equal(second_a[0], collect(b)[0])  # the second epoch repeats too
    assert not np.array_equal(first_a[0], collect(make(6))[0])


def test_shuffle_visits_every_image_once_per_epoch(ds):
    ids = ds.train_image_ids
    pipeline = classification_dataset(ds, ids, image_size=SIZE, shuffle=True, seed=1)
    plain = collect(classification_dataset(ds, ids, image_size=SIZE))[0]
    for _ in range(2):
        x = collect(pipeline)[0]
        assert not np.array_equal(x, plain)
        assert sorted(map(bytes, x)) == sorted(map(bytes, plain))


def test_repeat_runs_past_one_epoch(ds):
    pipeline = classification_dataset(
        ds, ds.train_image_ids, image_size=SIZE, batch_size=4, repeat=True, shuffle=True
    )
    assert sum(len(b[0]) for b in pipeline.take(7)) == 28


class CountingFlip:
    """A transform that counts how often the pipeline copies it."""

    copies = 0

    def __init__(self) -> None:
        self.flip = make_augmentation(p=1.0, brightness_contrast=False)

    def __deepcopy__(self, memo: dict) -> CountingFlip:
        CountingFlip.copies += 1
        return CountingFlip()

    def __call__(self, **data: np.ndarray) -> dict:
        return self.flip(**data)


def test_augmentation_is_copied_once_per_thread_not_per_image(ds):
    pipeline = segmentation_dataset(
        ds, ds.train_image_ids * 4, image_size=SIZE, augment=CountingFlip()
    )
    for _ in range(2):
        collect(pipeline)
    assert 1 <= CountingFlip.copies <= 16  # TensorFlow's threads; 88 images went through


class CountingSeeds:
    """A flip transform that records the seeds the pipeline gives it."""

    seeds: list[int] = []

    def __init__(self) -> None:
        self.flip = make_augmentation(p=0.5, brightness_contrast=False)

    def set_random_seed(self, seed: int) -> None:
        CountingSeeds.seeds.append(seed)
        self.flip.set_random_seed(seed)

    def __call__(self, **data: np.ndarray) -> dict:
        return self.flip(**data)


def test_augmentation_is_seeded_once_per_batch(ds):
    # Seeding albumentations costs as much as flipping and shifting an image: once per batch.
    CountingSeeds.seeds = []
    pipeline = segmentation_dataset(
        ds, ds.train_image_ids, image_size=SIZE, batch_size=4, augment=CountingSeeds(), seed=2
    )
    x, y = collect(pipeline)
    assert len(CountingSeeds.seeds) == 3  # 11 images in batches of 4
    assert_masks_on_bright_pixels(x, y)
    CountingSeeds.seeds = []
    again = collect(pipeline)  # a new epoch: new seeds, new flips
    assert len(CountingSeeds.seeds) == 3 and not np.array_equal(again[0], x)


def test_load_batch_stacks_what_load_gives(ds):
    loader = SampleLoader(ds, ds.train_image_ids, SIZE)
    images, masks = loader.load_batch([5, 0, 2])
    assert images.shape == (3, *SIZE, 1) and images.dtype == np.uint8
    assert masks.shape == (3, *SIZE, 4) and masks.dtype == np.uint8
    for k, index in enumerate([5, 0, 2]):
        image, mask = loader.load_uint8(index)
        assert np.array_equal(images[k], image) and np.array_equal(masks[k], mask)
    labels = SampleLoader(ds, ds.train_image_ids, SIZE, kind="classification", target="multilabel")
    _, y = labels.load_batch(np.array([1, 2]))
    assert y.dtype == np.float32 and np.array_equal(y, ds.class_labels(ds.train_image_ids)[1:3])
    augmented = SampleLoader(ds, ds.train_image_ids, SIZE, augment=True, crop=(32, 200))
    first, again = augmented.load_batch(range(6), seed=9), augmented.load_batch(range(6), seed=9)
    assert first[0].shape == (6, 32, 200, 1)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0], augmented.load_batch(range(6), seed=10)[0])


def test_make_augmentation_arguments():
    image = np.arange(16 * 32, dtype=np.uint8).reshape(16, 32)
    masks = np.zeros((16, 32, 4), np.uint8)
    identity = make_augmentation(hflip=False, vflip=False, brightness_contrast=False)
    assert np.array_equal(identity(image=image, mask=masks)["image"], image)
    out = make_augmentation(crop=(8, 8), seed=3)(image=image, mask=masks)
    assert out["image"].shape == (8, 8) and out["mask"].shape == (8, 8, 4)
    a = make_augmentation(seed=3)(image=image)["image"]
    assert np.array_equal(a, make_augmentation(seed=3)(image=image)["image"])
    with pytest.raises(ValueError, match="p must be a probability"):
        make_augmentation(p=2)


# ----- per-class sets, errors ----------------------------------------------------------------


def test_per_class_ids(ds):
    ids = ds.train_image_ids
    with_3 = [i for i, r in zip(ids, LAYOUT, strict=True) if any(c == 3 for c, *_ in r)]
    chosen = per_class_ids(ds, ids, 3, other_fraction=0.5, seed=0)
    assert set(with_3) <= set(chosen) and chosen == sorted(chosen)
    assert len(chosen) == len(with_3) + round(0.5 * (len(ids) - len(with_3)))
    assert chosen == per_class_ids(ds, ids, 3, other_fraction=0.5, seed=0)
    assert per_class_ids(ds, ids, 3, other_fraction=0.0) == with_3
    assert per_class_ids(ds, ids, 3, other_fraction=1.0) == ids
    _, masks = collect(segmentation_dataset(ds, with_3, image_size=SIZE, class_id=3))
    assert masks.shape[-1] == 1 and (masks.reshape(len(with_3), -1).max(axis=1) == 1).all()
    with pytest.raises(DataError, match="class_id must be one of"):
        per_class_ids(ds, ids, 5)
    with pytest.raises(DataError, match="other_fraction"):
        per_class_ids(ds, ids, 1, other_fraction=1.5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target": "multiclass"}, "target must be one of"),
        ({"batch_size": 0}, "batch_size must be"),
        ({"image_size": (0, 10)}, "image_size must be positive"),
    ],
)
def test_classification_argument_errors(ds, kwargs, match):
    with pytest.raises(DataError, match=match):
        classification_dataset(ds, ds.train_image_ids, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"class_id": 0}, "class_id must be one of"),
        ({"crop": (128, 128)}, "crop .* is larger than image_size"),
    ],
)
def test_segmentation_argument_errors(ds, kwargs, match):
    with pytest.raises(DataError, match=match):
        segmentation_dataset(ds, ds.train_image_ids, image_size=SIZE, **kwargs)


def test_empty_ids_and_bad_images_raise_data_error(ds, tmp_path):
    with pytest.raises(DataError, match="no image ids"):
        segmentation_dataset(ds, [])
    with pytest.raises(DataError, match="not train images.*typo.jpg"):
        classification_dataset(ds, ["typo.jpg"])
    broken = build_folder(tmp_path / "broken")
    (broken.root / "train_images" / broken.train_image_ids[0]).write_bytes(b"garbage")
    with pytest.raises(DataError, match="not a readable image"):
        SampleLoader(broken, broken.train_image_ids, SIZE).load(0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="not a readable image"):
        collect(segmentation_dataset(broken, broken.train_image_ids, image_size=SIZE))


# ----- with Keras and the synthetic data -----------------------------------------------------


def test_keras_fits_on_the_pipelines(tiny_dataset):
    import keras

    synthetic = SteelDataset(tiny_dataset)
    train, _ = synthetic.split(0.25, seed=0)
    model = keras.Sequential(
        [keras.Input((*SIZE, 1)), keras.layers.Conv2D(4, 3, padding="same", activation="sigmoid")]
    )
    model.compile("adam", "binary_crossentropy")
    batches = segmentation_dataset(
        synthetic, train, image_size=SIZE, augment=True, shuffle=True, repeat=True
    )
    history = model.fit(batches, epochs=1, steps_per_epoch=2, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"][0])
    classifier = keras.Sequential(
        [
            keras.Input((*SIZE, 1)),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(4, activation="sigmoid"),
        ]
    )
    classifier.compile("adam", "binary_crossentropy")
    labels = classification_dataset(synthetic, train[:8], image_size=SIZE, target="multilabel")
    assert classifier.fit(labels, epochs=1, verbose=0, shuffle=False).history["loss"][0] > 0


def test_imports_stay_light():
    code = (
        "import sys, steel_keras.data, steel_keras.data.tfdata; "
        "print('tensorflow' in sys.modules, 'albumentations' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "False"]
