"""Reading the Severstal data: CSV files, the Kaggle-layout folder, images, input pipelines.

Importing this package is cheap (pandas, numpy, Pillow): the commands that only read CSV files
must not pay for TensorFlow or albumentations. ``make_augmentation`` is loaded on first use, and
the TensorFlow pipelines live in :mod:`steel_keras.data.tfdata`, which is not imported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from steel_keras.data.annotations import (
    Annotations,
    load_annotations,
    read_annotations,
    read_submission,
    write_annotations,
    write_submission,
)
from steel_keras.data.dataset import (
    SteelDataset,
    defect_free_ids,
    open_dataset,
    per_image_table,
    rle_area,
)
from steel_keras.data.images import read_image, resize_masks

if TYPE_CHECKING:
    from steel_keras.data.augment import make_augmentation

__all__ = [
    "Annotations",
    "SteelDataset",
    "defect_free_ids",
    "load_annotations",
    "make_augmentation",
    "open_dataset",
    "per_image_table",
    "read_annotations",
    "read_image",
    "read_submission",
    "resize_masks",
    "rle_area",
    "write_annotations",
    "write_submission",
]


def __getattr__(name: str) -> Any:
    # albumentations takes 1.6 s to import: load it only when augmentation is asked for.
    if name == "make_augmentation":
        from steel_keras.data.augment import make_augmentation

        return make_augmentation
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
