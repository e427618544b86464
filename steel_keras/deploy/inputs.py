"""Real images of a run's dataset, as its models take them: for parity checks, calibration and
benchmarks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from steel_keras.data.dataset import open_dataset
from steel_keras.data.tfdata import load_arrays
from steel_keras.errors import DataError
from steel_keras.rundir import read_config


def run_images(run_dir: str | Path, image_size: tuple[int, int], count: int,
               data: str | Path | None = None) -> np.ndarray:
    """`count` real images of the run's dataset, as the models take them.

    Validation images first (held out from training), then training images, repeated where the
    folder has fewer than `count`.

    Returns:
        float32 `(count, height, width, 1)` in `[0, 1]`.
    """
    config = read_config(run_dir)
    folder = data if data is not None else config.get("data")
    if folder is not None and not Path(folder).is_dir():
        raise DataError(f"the run's data folder {folder} does not exist; pass --data FOLDER")
    ds = open_dataset(folder)
    train_ids, val_ids = ds.split(config.get("val_fraction", 0.2), seed=config.get("seed", 0))
    pool = val_ids + train_ids
    if not pool:
        raise DataError(f"{ds.root} has no training images to check the exports on")
    ids = [pool[i % len(pool)] for i in range(count)]
    x, _ = load_arrays(ds, ids, image_size, kind="classification")
    return x
