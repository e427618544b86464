"""Input pipelines: batches of images and labels or masks for Keras 3.

The pipelines are ``tf.data`` datasets. The images of a batch are read, resized, cropped and
augmented in numpy (:meth:`SampleLoader.load_batch`) inside one ``tf.numpy_function`` call, the
batches loaded by a parallel ``map``; whole batches are then scaled to float32 in TensorFlow, so
a quarter of the bytes cross into TensorFlow. One call per batch rather than per image, with the
augmentation seeded once per batch, is what keeps a cached pipeline cheap next to a small model
(``docs/benchmarks.md``). Pillow's JPEG decoder, OpenCV and most of numpy release the GIL, so
two threads keep two cores busy. ``keras.utils.PyDataset`` with two worker threads, the other
candidate, was measured against it on the same shared 2-core machine
(``benchmarks/bench_pipeline.py``, segmentation with augmentation, batch 8): 146 vs 71 images/s
at 128 x 800 and 75 vs 49 at 256 x 1600, using 8.2 vs 13.3 and 11.6 vs 20.8 CPU ms per image;
its batches also reach ``model.fit`` through a Python generator. ``tf.data`` is also what
``fit``, ``predict`` and the export paths consume natively.

Augmentation is deterministic: every batch gets its own seed from a ``tf.data`` random stream
seeded with ``seed`` that draws new values each epoch, so a run repeats exactly, epochs differ,
and results do not depend on which thread loaded which batch.

TensorFlow is imported inside the functions that build datasets, so importing this module (for
:func:`load_arrays` or :func:`per_class_ids`) stays cheap.

Example:
    >>> from steel_keras.data import SteelDataset, make_augmentation  # doctest: +SKIP
    >>> ds = SteelDataset("datasets/synthetic")  # doctest: +SKIP
    >>> train_ids, val_ids = ds.split(0.2, seed=0)  # doctest: +SKIP
    >>> batches = segmentation_dataset(ds, train_ids, augment=make_augmentation(),
    ...                                shuffle=True)  # doctest: +SKIP
    >>> images, masks = next(iter(batches))  # doctest: +SKIP
    >>> images.shape, masks.shape  # doctest: +SKIP
    (TensorShape([8, 128, 800, 1]), TensorShape([8, 128, 800, 4]))
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from steel_keras.constants import CLASS_IDS
from steel_keras.data.images import SCALE, check_size, scale_image
from steel_keras.errors import DataError

if TYPE_CHECKING:
    import tensorflow as tf

    from steel_keras.data.dataset import SteelDataset

__all__ = [
    "SampleLoader",
    "classification_dataset",
    "load_arrays",
    "per_class_ids",
    "segmentation_dataset",
]

TARGETS = ("binary", "multilabel")
Augment = Callable[..., dict[str, Any]] | bool | None


class SampleLoader:
    """Load one sample (image and labels or masks) in numpy: resize, crop, augment; thread-safe.

    Args:
        ds: the dataset to read.
        image_ids: the images, in the order indices refer to.
        image_size: (height, width) images and masks are resized to, by area.
        kind: ``"segmentation"`` (image, masks) or ``"classification"`` (image, labels).
        target: for classification, ``"binary"`` (any defect, ``(1,)``) or ``"multilabel"``
            (one per class, ``(4,)``).
        class_id: for segmentation, one class 1-4 gives ``(H, W, 1)`` masks; None all four.
        augment: an albumentations transform called as ``augment(image=..., mask=...)``,
            True for :func:`make_augmentation`'s defaults, or None.
        crop: (height, width), optional. A random crop of the resized image and masks.
        cache: keep the decoded, resized ``uint8`` image and masks in memory.
        split: ``"train"``, or ``"test"`` for synthetic test images with ``test_truth.csv``.
    """

    def __init__(
        self,
        ds: SteelDataset,
        image_ids: Sequence[str],
        image_size: tuple[int, int] = (128, 800),
        *,
        kind: str = "segmentation",
        target: str = "binary",
        class_id: int | None = None,
        augment: Augment = None,
        crop: tuple[int, int] | None = None,
        cache: bool = False,
        split: str = "train",
    ) -> None:
        self.ds, self.image_ids, self.kind, self.split = ds, list(image_ids), kind, split
        self.image_size = check_size(image_size, "image_size")
        self.crop = _check_crop(crop, self.image_size)
        self.channels = _check_target(kind, target, class_id)
        self.class_id = class_id
        if augment is True:
            from steel_keras.data.augment import make_augmentation

            augment = make_augmentation()
        self._augment = augment or None
        self._per_thread: dict[int, Callable[..., dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._cache: dict[int, tuple[np.ndarray, np.ndarray | None]] | None = {} if cache else None
        if not self.image_ids:
            raise DataError(f"no image ids given to the {kind} pipeline")
        # Checked and built here, once: a bad id fails before training starts, and worker
        # threads only read shared state.
        ds.check_ids(self.image_ids, split)
        labels = ds.class_labels(self.image_ids, split).astype(np.float32)
        self.labels = labels.max(axis=1, keepdims=True) if target == "binary" else labels

    @property
    def output_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Shapes of one sample's image and target."""
        height, width = self.crop or self.image_size
        if self.kind == "classification":
            return (height, width, 1), (self.channels,)
        return (height, width, 1), (height, width, self.channels)

    @property
    def target_dtype(self) -> type[np.generic]:
        """The dtype of targets before scaling: float32 labels or ``uint8`` masks."""
        return np.float32 if self.kind == "classification" else np.uint8

    def __len__(self) -> int:
        return len(self.image_ids)

    def load(self, index: int, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Sample ``index``: image ``(H, W, 1)`` in [0, 1] and its labels or masks, float32.

        ``seed`` fixes the random crop and augmentation of this sample.
        """
        image, target = self.load_uint8(index, seed)
        return scale_image(image), target.astype(np.float32, copy=False)

    def load_uint8(self, index: int, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`load`, before scaling: image ``uint8`` ``(H, W, 1)``, masks ``uint8``.

        Labels are float32 already.
        """
        images, targets = self.load_batch([index], seed)
        return images[0], targets[0]

    def load_batch(
        self, indices: Sequence[int] | np.ndarray, seed: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Samples ``indices`` stacked: images ``uint8`` ``(B, H, W, 1)`` and their targets.

        Targets are ``uint8`` masks ``(B, H, W, C)`` or float32 labels ``(B, C)``. ``seed``
        fixes the random crops and augmentation of the whole batch: one random generator
        draws them in order, and the augmentation is seeded once, not once per sample
        (albumentations builds new random generators at every ``set_random_seed``). The
        pipelines call this once per batch and scale whole batches in TensorFlow, which moves
        a quarter of the bytes through ``tf.numpy_function`` and saves a call per image.
        """
        rng = None
        if self.crop is not None or self._augment is not None:
            # tf.data's seeds are signed int64; numpy wants them non-negative.
            rng = np.random.default_rng(None if seed is None else int(seed) & (2**63 - 1))
        augment = None if self._augment is None else self._thread_augment(rng)
        x_shape, y_shape = self.output_shapes
        images = np.empty((len(indices), *x_shape), np.uint8)
        targets = np.empty((len(indices), *y_shape), self.target_dtype)
        for k, index in enumerate(indices):
            index = int(index)
            image, masks = self._decoded(index)
            if self.crop is not None:
                image, masks = _random_crop(image, masks, self.crop, rng)
            if augment is not None:
                image, masks = _apply_augment(augment, image, masks)
            images[k, ..., 0] = image
            targets[k] = self.labels[index] if self.kind == "classification" else masks
        return images, targets

    def _decoded(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        image_id = self.image_ids[index]
        image = self.ds.load_image(image_id, self.split, self.image_size)
        masks = None
        if self.kind == "segmentation":
            masks = self.ds.load_masks(image_id, self.image_size, self.split)
            if self.class_id is not None:
                masks = np.ascontiguousarray(masks[..., self.class_id - 1 : self.class_id])
        if self._cache is not None:
            self._cache[index] = (image, masks)
        return image, masks

    def _thread_augment(self, rng: np.random.Generator) -> Callable[..., dict[str, Any]]:
        """This thread's copy of the augmentation, seeded from ``rng``."""
        # One copy of the transform per thread: reseeding a shared one would race. Keyed by
        # thread id, not threading.local: tf.numpy_function runs on TensorFlow's threads, whose
        # Python thread state (and with it threading.local) is discarded after every call.
        augment = self._per_thread.get(threading.get_ident())
        if augment is None:
            with self._lock:
                augment = self._per_thread[threading.get_ident()] = copy.deepcopy(self._augment)
        if hasattr(augment, "set_random_seed"):
            augment.set_random_seed(int(rng.integers(2**31)))
        return augment


def _apply_augment(
    augment: Callable[..., dict[str, Any]], image: np.ndarray, masks: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    if masks is None:
        return augment(image=image)["image"], None
    out = augment(image=image, mask=masks)
    return out["image"], out["mask"]


def _check_target(kind: str, target: str, class_id: int | None) -> int:
    if kind == "classification":
        if target not in TARGETS:
            raise DataError(f"target must be one of {TARGETS}, got {target!r}")
        return 1 if target == "binary" else len(CLASS_IDS)
    if kind != "segmentation":
        raise DataError(f"kind must be 'segmentation' or 'classification', got {kind!r}")
    if class_id is not None and class_id not in CLASS_IDS:
        raise DataError(f"class_id must be one of {CLASS_IDS} or None, got {class_id!r}")
    return len(CLASS_IDS) if class_id is None else 1


def _check_crop(
    crop: tuple[int, int] | None, image_size: tuple[int, int]
) -> tuple[int, int] | None:
    crop = check_size(crop, "crop")
    if crop is not None and (crop[0] > image_size[0] or crop[1] > image_size[1]):
        raise DataError(
            f"crop {crop} is larger than image_size {image_size}; crops are taken "
            "from the resized image"
        )
    return None if crop == image_size else crop


def _random_crop(
    image: np.ndarray, masks: np.ndarray | None, crop: tuple[int, int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    top = int(rng.integers(image.shape[0] - crop[0] + 1))
    left = int(rng.integers(image.shape[1] - crop[1] + 1))
    window = (slice(top, top + crop[0]), slice(left, left + crop[1]))
    return image[window], None if masks is None else masks[window]


def _to_tf_dataset(
    loader: SampleLoader,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    repeat: bool,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Indices (shuffled, repeated) in batches, a seed per batch, parallel loading, prefetch."""
    import tensorflow as tf

    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size!r}")
    n = len(loader)
    indices = tf.data.Dataset.range(n)
    if shuffle:
        indices = indices.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        indices = indices.repeat()
    # New seeds each epoch, the same sequence for the same `seed`.
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    x_shape, y_shape = loader.output_shapes
    y_type = tf.as_dtype(loader.target_dtype)
    rows = batch_size if drop_remainder else None  # a static batch dimension where it is fixed

    def load(batch: tf.Tensor, batch_seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        x, y = tf.numpy_function(
            loader.load_batch, [batch, batch_seed], [tf.uint8, y_type], stateful=False
        )
        return tf.ensure_shape(x, (rows, *x_shape)), tf.ensure_shape(y, (rows, *y_shape))

    def to_float(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        # The same float32 multiplication as steel_keras.data.images.scale_image.
        return tf.cast(x, tf.float32) * SCALE, tf.cast(y, tf.float32)

    batches = indices.batch(batch_size, drop_remainder=drop_remainder)
    pipeline = tf.data.Dataset.zip(batches, seeds).map(
        load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    return pipeline.map(to_float, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def classification_dataset(
    ds: SteelDataset,
    image_ids: Sequence[str],
    *,
    image_size: tuple[int, int] = (128, 800),
    batch_size: int = 8,
    target: str = "binary",
    augment: Augment = None,
    shuffle: bool = False,
    seed: int = 0,
    repeat: bool = False,
    cache: bool = False,
    split: str = "train",
) -> tf.data.Dataset:
    """Batches ``(images, labels)`` for a defect classifier.

    Args:
        ds: the dataset.
        image_ids: the images to use (e.g. one side of :meth:`SteelDataset.split`).
        image_size: (height, width) images are resized to by area. Defaults to (128, 800).
        batch_size: images per batch; the last batch may be smaller.
        target: ``"binary"`` (labels ``(B, 1)``: any defect) or ``"multilabel"`` (``(B, 4)``).
        augment: an albumentations transform (:func:`make_augmentation`), True for its
            defaults, or None for none. Give it to training data only.
        shuffle: shuffle the images each epoch (reproducibly, from ``seed``).
        seed: seeds the shuffle and the augmentation.
        repeat: repeat forever (then pass ``steps_per_epoch`` to ``fit``).
        cache: keep decoded, resized images in memory after their first use.
        split: ``"train"``, or ``"test"`` where ``test_truth.csv`` gives test labels.

    Returns:
        A ``tf.data.Dataset`` of ``(images float32 (B, H, W, 1) in [0, 1], labels float32)``.
    """
    loader = SampleLoader(
        ds,
        image_ids,
        image_size,
        kind="classification",
        target=target,
        augment=augment,
        cache=cache,
        split=split,
    )
    return _to_tf_dataset(loader, batch_size, shuffle=shuffle, seed=seed, repeat=repeat)


def segmentation_dataset(
    ds: SteelDataset,
    image_ids: Sequence[str],
    *,
    image_size: tuple[int, int] = (128, 800),
    batch_size: int = 8,
    class_id: int | None = None,
    augment: Augment = None,
    shuffle: bool = False,
    seed: int = 0,
    crop: tuple[int, int] | None = None,
    repeat: bool = False,
    cache: bool = False,
    split: str = "train",
) -> tf.data.Dataset:
    """Batches ``(images, masks)`` for a segmenter.

    Args:
        ds: the dataset.
        image_ids: the images to use; see :func:`per_class_ids` for a per-class model.
        image_size: (height, width) images and masks are resized to by area (masks then
            thresholded at 0.5). Defaults to (128, 800).
        batch_size: images per batch; the last batch may be smaller.
        class_id: 1-4 gives masks ``(B, H, W, 1)`` of that class; None all four classes.
        augment: an albumentations transform (:func:`make_augmentation`), True for its
            defaults, or None. It moves masks with the image.
        shuffle: shuffle the images each epoch (reproducibly, from ``seed``).
        seed: seeds the shuffle, the crops and the augmentation.
        crop: (height, width), optional. A random crop of the resized image and masks, for
            training fully convolutional models on patches; leave None for validation.
        repeat: repeat forever (then pass ``steps_per_epoch`` to ``fit``).
        cache: keep decoded, resized images and masks in memory after their first use.
        split: ``"train"``, or ``"test"`` where ``test_truth.csv`` gives test masks.

    Returns:
        A ``tf.data.Dataset`` of ``(images float32 (B, H, W, 1) in [0, 1], masks float32
        (B, H, W, 4 or 1) of 0 and 1)``; H, W are the crop's where ``crop`` is given.
    """
    loader = SampleLoader(
        ds,
        image_ids,
        image_size,
        kind="segmentation",
        class_id=class_id,
        augment=augment,
        crop=crop,
        cache=cache,
        split=split,
    )
    return _to_tf_dataset(loader, batch_size, shuffle=shuffle, seed=seed, repeat=repeat)


def load_arrays(
    ds: SteelDataset,
    image_ids: Sequence[str],
    image_size: tuple[int, int] = (128, 800),
    *,
    kind: str = "segmentation",
    target: str = "binary",
    class_id: int | None = None,
    split: str = "train",
    workers: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Load every image (and its masks or labels) into memory, without augmentation.

    The arrays are what the pipelines yield, stacked: ``x`` float32 ``(N, H, W, 1)`` and
    ``y`` float32 masks ``(N, H, W, C)`` or labels ``(N, C)``. Mind the memory: 1,000 images
    at 128 x 800 with four masks take 2 GB.

    Args:
        ds, image_ids, image_size, target, class_id, split: as for the pipelines.
        kind: ``"segmentation"`` or ``"classification"``.
        workers: threads that decode images.
    """
    loader = SampleLoader(
        ds, image_ids, image_size, kind=kind, target=target, class_id=class_id, split=split
    )
    x_shape, y_shape = loader.output_shapes
    x = np.empty((len(loader), *x_shape), dtype=np.float32)
    y = np.empty((len(loader), *y_shape), dtype=np.float32)

    def fill(index: int) -> None:
        x[index], y[index] = loader.load(index)

    with ThreadPoolExecutor(max(1, workers)) as pool:
        list(pool.map(fill, range(len(loader))))
    return x, y


def per_class_ids(
    ds: SteelDataset,
    image_ids: Sequence[str],
    class_id: int,
    other_fraction: float = 0.3,
    seed: int = 0,
) -> list[str]:
    """The images of ``image_ids`` that have ``class_id``, plus a share of the others.

    A per-class segmenter trains on the images of its class and on some others (defect-free
    or other classes), so that it also learns to predict nothing.

    Args:
        ds: the dataset.
        image_ids: the pool to choose from (e.g. the train side of a split).
        class_id: 1-4.
        other_fraction: float in [0, 1]. The share of the images without ``class_id`` to add,
            drawn at random from ``seed``.
        seed: the same seed gives the same images.

    Returns:
        The chosen ids, sorted.
    """
    if class_id not in CLASS_IDS:
        raise DataError(f"class_id must be one of {CLASS_IDS}, got {class_id!r}")
    if not 0 <= other_fraction <= 1:
        raise DataError(f"other_fraction must be in [0, 1], got {other_fraction!r}")
    ids = sorted(set(image_ids))
    has = ds.class_labels(ids)[:, class_id - 1].astype(bool)
    others = [i for i, h in zip(ids, has, strict=True) if not h]
    n_other = int(round(other_fraction * len(others)))
    chosen = np.random.default_rng(seed).choice(len(others), size=n_other, replace=False)
    return sorted([i for i, h in zip(ids, has, strict=True) if h] + [others[j] for j in chosen])
