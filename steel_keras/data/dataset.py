"""The Kaggle-layout folder as one object: ids, images, masks, per-image facts and splits.

A Severstal folder holds ``train.csv`` (either format), ``train_images/``, ``test_images/`` and
``sample_submission.csv``; the synthetic data adds ``test_truth.csv``. :class:`SteelDataset`
reads it lazily: nothing is read until asked for, and each file is read once.

Train image ids are the files in ``train_images/`` (so defect-free images count whatever the
CSV format) plus, in the original format, every id the CSV lists. Without ``train_images/`` the
ids come from the CSV alone, which is enough for the EDA of a CSV file.

Example:
    >>> ds = SteelDataset("datasets/synthetic")  # doctest: +SKIP
    >>> image = ds.load_image(ds.train_image_ids[0], size=(128, 800))  # doctest: +SKIP
    >>> masks = ds.load_masks(ds.train_image_ids[0], size=(128, 800))  # doctest: +SKIP
    >>> image.shape, masks.shape  # doctest: +SKIP
    ((128, 800), (128, 800, 4))
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from steel_keras.constants import CLASS_IDS, IMAGE_SHAPE
from steel_keras.data.annotations import Annotations, load_annotations, read_submission
from steel_keras.data.images import (
    IMAGE_SUFFIXES,
    broken_link,
    check_size,
    downscale_mask,
    read_image,
)
from steel_keras.errors import DataError
from steel_keras.rle import decode_rle, is_empty_rle

__all__ = [
    "SPLITS",
    "SteelDataset",
    "defect_free_ids",
    "open_dataset",
    "per_image_table",
    "rle_area",
]

SPLITS = ("train", "test")
_LAYOUT = "a Kaggle-layout folder (train.csv, train_images/, test_images/, sample_submission.csv)"
_MAKE_HINT = (
    "generate one with `steel-keras make-dataset --out DIR` or download the "
    "competition data (see datasets/README.md)"
)


def rle_area(rle: str | None) -> int:
    """Number of foreground pixels of an RLE string: the sum of its run lengths, no decoding."""
    if is_empty_rle(rle):
        return 0
    return int(np.array(rle.split()[1::2], dtype=np.int64).sum())


def defect_free_ids(long_table: pd.DataFrame, all_ids: Sequence[str]) -> list[str]:
    """The images without any mask: the ids of ``all_ids`` with no row in ``long_table``, sorted.

    The long table lists only non-empty masks, so defect-free images appear only in the list
    of all ids (the files in ``train_images/``, or every id of the original format).

    Example:
        >>> table = pd.DataFrame({"ImageId": ["b.jpg"], "ClassId": [3], "EncodedPixels": ["1 2"]})
        >>> defect_free_ids(table, ["c.jpg", "b.jpg", "a.jpg"])
        ['a.jpg', 'c.jpg']
    """
    return sorted(set(all_ids) - set(long_table["ImageId"]))


def per_image_table(long_table: pd.DataFrame, all_ids: Sequence[str]) -> pd.DataFrame:
    """One row per image of ``all_ids`` (sorted, each once) with what its masks hold.

    Columns: ``ImageId``, ``has_defect`` (bool), ``classes`` (the classes present,
    space-separated: ``""``, ``"3"``, ``"1 3"``), ``n_classes`` and ``area_1`` .. ``area_4``
    (pixels at 256 x 1600, summed from the RLE run lengths without decoding); index ``0..n-1``.
    """
    areas = (
        long_table.assign(area=long_table["EncodedPixels"].map(rle_area))
        .pivot(index="ImageId", columns="ClassId", values="area")
        .reindex(index=sorted(set(all_ids)), columns=list(CLASS_IDS))
        .fillna(0)
        .astype(np.int64)
    )
    present = areas.to_numpy() > 0
    table = pd.DataFrame({"ImageId": areas.index.to_list()})
    table["has_defect"] = present.any(axis=1)
    table["classes"] = [
        " ".join(str(c) for c, p in zip(CLASS_IDS, row, strict=True) if p) for row in present
    ]
    table["n_classes"] = present.sum(axis=1).astype(np.int64)
    for c in CLASS_IDS:
        table[f"area_{c}"] = areas[c].to_numpy()
    return table


def _list_images(folder: Path) -> list[str]:
    """The image files of ``folder``, sorted; a link that leads nowhere is a DataError."""
    # scandir rather than glob: one system call per folder, fast on 12,568 files.
    with os.scandir(folder) as entries:
        named = [
            e
            for e in entries
            if not e.name.startswith(".") and e.name.lower().endswith(IMAGE_SUFFIXES)
        ]
    return sorted(e.name for e in named if _is_image_file(e))


def _is_image_file(entry: os.DirEntry) -> bool:
    # Only links need a look: a loop makes is_file() raise, a dangling one would go unnoticed.
    if entry.is_symlink():
        problem = broken_link(Path(entry.path))
        if problem:
            raise DataError(problem)
    return entry.is_file()


class SteelDataset:
    """A Severstal folder in Kaggle's layout, real or synthetic.

    Args:
        root: the folder holding ``train.csv``, ``train_images/``, ``test_images/`` and
            ``sample_submission.csv``. Only the files a method needs must exist.

    Raises:
        DataError: ``root`` is missing or not a folder.
    """

    def __init__(self, root: str | Path) -> None:
        root = Path(root).expanduser()
        if not root.exists():
            raise DataError(f"{root}: no such folder; expected {_LAYOUT}: {_MAKE_HINT}")
        if not root.is_dir():
            raise DataError(f"{root} is a file; expected {_LAYOUT}")
        self.root = root

    def __repr__(self) -> str:
        return f"SteelDataset({str(self.root)!r})"

    # ----- CSV files -------------------------------------------------------------------------

    @cached_property
    def annotations(self) -> Annotations:
        """``train.csv`` read into the long table (either format)."""
        path = self.root / "train.csv"
        if not path.is_file():
            raise DataError(f"{path}: file not found; expected {_LAYOUT}")
        return load_annotations(path)

    @property
    def masks_table(self) -> pd.DataFrame:
        """``ImageId, ClassId, EncodedPixels``: the non-empty train masks."""
        return self.annotations.table

    @cached_property
    def sample_submission(self) -> Annotations | None:
        """``sample_submission.csv`` in either format, or None where the folder has none."""
        path = self.root / "sample_submission.csv"
        return read_submission(path) if path.is_file() else None

    @cached_property
    def test_truth(self) -> Annotations | None:
        """``test_truth.csv`` (the synthetic data's test masks), or None where absent."""
        path = self.root / "test_truth.csv"
        return load_annotations(path, allow_placeholder=True) if path.is_file() else None

    @property
    def submission_format(self) -> str:
        """``"original"`` or ``"submission"``: the format of the sample submission."""
        sample = self.sample_submission
        return "original" if sample is not None and sample.format == "original" else "submission"

    # ----- image ids -------------------------------------------------------------------------

    @cached_property
    def train_image_ids(self) -> list[str]:
        """Every train image, defect-free ones included, sorted.

        Raises:
            DataError: ``train_images/`` is empty, or ``train.csv`` lists an image it lacks.
        """
        annotations = self.annotations
        listed = set(annotations.image_ids)
        folder = self.root / "train_images"
        if not folder.is_dir():
            return sorted(listed)
        files = _list_images(folder)
        if not files:
            raise DataError(f"{folder}: no images (.jpg) in the folder; {_MAKE_HINT}")
        missing = sorted(listed - set(files))
        if missing:
            raise DataError(
                f"{annotations.path}: {len(missing)} image(s) listed there have no file in "
                f"{folder}, e.g. {', '.join(missing[:3])}; add the images or remove their rows"
            )
        return files

    @cached_property
    def test_image_ids(self) -> list[str]:
        """The files in ``test_images/``, sorted; ``[]`` where the folder is absent."""
        folder = self.root / "test_images"
        return _list_images(folder) if folder.is_dir() else []

    # ----- images and masks ------------------------------------------------------------------

    def image_path(self, image_id: str, split: str = "train") -> Path:
        """``root/{split}_images/{image_id}``; the file need not exist."""
        if split not in SPLITS:
            raise DataError(f"split must be one of {SPLITS}, got {split!r}")
        return self.root / f"{split}_images" / image_id

    def load_image(
        self, image_id: str, split: str = "train", size: tuple[int, int] | None = None
    ) -> np.ndarray:
        """One image as grayscale ``uint8`` ``(H, W)``; ``size=(h, w)`` resizes by area.

        Raises:
            DataError: the file is missing, corrupt, or not 1600x256.
        """
        return read_image(self.image_path(image_id, split), size)

    def load_masks(
        self, image_id: str, size: tuple[int, int] | None = None, split: str = "train"
    ) -> np.ndarray:
        """The four class masks of an image as ``uint8`` ``(H, W, 4)`` holding 0 and 1.

        Args:
            image_id: e.g. ``"0002cc93b.jpg"``. An image without masks gives zeros.
            size: (height, width), optional. Resized by area and thresholded at 0.5, as
                :meth:`load_image` resizes the image, so the two stay aligned.
            split: ``"train"`` reads ``train.csv``; ``"test"`` reads ``test_truth.csv``.
        """
        size = check_size(size)
        rles = self.rle_lookup(split).get(image_id)
        if not rles and image_id not in self._known_ids(split):
            # Zeros for a mistyped id would silently teach "no defect".
            raise DataError(f"image {image_id!r} is not a {split} image of {self.root}")
        out = np.zeros((*(size or IMAGE_SHAPE), len(CLASS_IDS)), dtype=np.uint8)
        for class_id, rle in (rles or {}).items():
            # Decode only the classes present: most images have one mask or none.
            mask = decode_rle(rle, IMAGE_SHAPE, image_id=image_id, class_id=class_id)
            out[..., class_id - 1] = mask if size is None else downscale_mask(mask, size)
        return out

    def rle_lookup(self, split: str = "train") -> dict[str, dict[int, str]]:
        """``{image_id: {class_id: rle}}`` of the non-empty masks, built once per split."""
        if split not in SPLITS:
            raise DataError(f"split must be one of {SPLITS}, got {split!r}")
        return self._test_lookup if split == "test" else self._train_lookup

    def check_ids(self, image_ids: Sequence[str], split: str = "train") -> None:
        """Raise :class:`DataError` naming the ids that are not images of ``split``.

        Also builds the lookups that :meth:`load_masks` reads, so that threads only read them.
        """
        self.rle_lookup(split)
        unknown = sorted(set(image_ids) - self._known_ids(split))
        if unknown:
            raise DataError(
                f"{len(unknown)} id(s) are not {split} images of {self.root}, e.g. "
                f"{', '.join(unknown[:3])}"
            )

    def _known_ids(self, split: str) -> frozenset[str]:
        if split == "test":
            return self._test_ids_with_truth
        return self._train_id_set

    @cached_property
    def _train_id_set(self) -> frozenset[str]:
        return frozenset(self.train_image_ids)

    @cached_property
    def _test_ids_with_truth(self) -> frozenset[str]:
        truth = self.test_truth
        return frozenset(self.test_image_ids) | frozenset(truth.image_ids if truth else ())

    @cached_property
    def _train_lookup(self) -> dict[str, dict[int, str]]:
        return self.annotations.rle_lookup()

    @cached_property
    def _test_lookup(self) -> dict[str, dict[int, str]]:
        truth = self.test_truth
        if truth is None:
            raise DataError(
                f"{self.root / 'test_truth.csv'}: file not found; test masks are "
                "known only for synthetic data (real test labels are Kaggle's)"
            )
        return truth.rle_lookup()

    def class_labels(self, image_ids: list[str], split: str = "train") -> np.ndarray:
        """``(N, 4)`` uint8: 1 where the image has a mask of that class."""
        lookup = self.rle_lookup(split)
        return np.array(
            [[c in lookup.get(i, ()) for c in CLASS_IDS] for i in image_ids], dtype=np.uint8
        ).reshape(len(image_ids), len(CLASS_IDS))

    # ----- tables, splits --------------------------------------------------------------------

    def per_image_table(self) -> pd.DataFrame:
        """One row per train image: ``ImageId, has_defect, classes, n_classes, area_1..area_4``.

        ``classes`` lists the classes present, e.g. ``""``, ``"3"`` or ``"1 3"``; areas are
        pixel counts at 256 x 1600, summed from the RLE run lengths without decoding.
        """
        return self._per_image_table.copy()

    @cached_property
    def _per_image_table(self) -> pd.DataFrame:
        return per_image_table(self.masks_table, self.train_image_ids)

    def split(self, val_fraction: float = 0.2, seed: int = 0) -> tuple[list[str], list[str]]:
        """Split the train images in two, stratified by class combination.

        Each combination (``""``, ``"3"``, ``"1 3"``, ...) sends about ``val_fraction`` of its
        images to validation; the total is ``round(val_fraction * n)`` where possible. A
        combination with one image stays in train, and every combination keeps at least one.

        Args:
            val_fraction: float in [0, 1). The share of images for validation.
            seed: int. The same seed gives the same split.

        Returns:
            ``(train_ids, val_ids)``, both sorted.
        """
        return stratified_split(self.per_image_table(), val_fraction, seed)

    def describe(self) -> str:
        """A few lines on what the folder holds."""
        lines = [f"Severstal data at {self.root}"]
        if (self.root / "train.csv").is_file():
            table = self.per_image_table()
            per_class = "/".join(str(int((table[f"area_{c}"] > 0).sum())) for c in CLASS_IDS)
            lines.append(
                f"  train: {len(table)} images, {int(table['has_defect'].sum())} with "
                f"defects; images per class 1/2/3/4: {per_class}; "
                f"train.csv in the {self.annotations.format} format"
            )
        else:
            lines.append("  train: no train.csv")
        lines.append(
            f"  test: {len(self.test_image_ids)} images; sample_submission: "
            + ("absent" if self.sample_submission is None else self.submission_format)
            + ("; test_truth.csv present" if self.test_truth is not None else "")
        )
        return "\n".join(lines)


def stratified_split(
    table: pd.DataFrame, val_fraction: float, seed: int, key: str = "classes"
) -> tuple[list[str], list[str]]:
    """Split ``table.ImageId`` by ``table[key]`` groups; see :meth:`SteelDataset.split`."""
    if not 0 <= val_fraction < 1:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    groups = [sorted(g["ImageId"]) for _, g in table.groupby(key, sort=True)]
    sizes = np.array([len(g) for g in groups])
    quota = val_fraction * sizes
    n_val = np.minimum(np.floor(quota).astype(int), np.maximum(sizes - 1, 0))
    # Hand out the remaining validation places by largest remainder, never taking a
    # combination's last image: the total then matches val_fraction without per-group drift.
    want = min(int(round(val_fraction * sizes.sum())), int(np.maximum(sizes - 1, 0).sum()))
    for i in np.argsort(-(quota - n_val), kind="stable"):
        if n_val.sum() >= want:
            break
        if n_val[i] < sizes[i] - 1:
            n_val[i] += 1
    rng = np.random.default_rng(seed)
    train: list[str] = []
    val: list[str] = []
    for ids, k in zip(groups, n_val, strict=True):
        order = rng.permutation(len(ids))
        val.extend(ids[j] for j in order[:k])
        train.extend(ids[j] for j in order[k:])
    return sorted(train), sorted(val)


def open_dataset(path: str | Path | SteelDataset | None = None) -> SteelDataset:
    """A :class:`SteelDataset` for ``path``; None means the embedded synthetic data.

    The synthetic data is generated on first use (see ``steel_keras.synthetic``).
    """
    if isinstance(path, SteelDataset):
        return path
    if path is None:
        from steel_keras.synthetic import resolve_data_dir  # lazy: generates data on first use

        path = resolve_data_dir(None)
    return SteelDataset(path)
