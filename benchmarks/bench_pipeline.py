"""Throughput of the input pipelines, with augmentation, in images per second.

Times ``segmentation_dataset`` and ``classification_dataset`` (``steel_keras.data.pipelines``)
with :func:`~steel_keras.data.augment.make_augmentation`'s defaults (flips, brightness and
contrast) at 128 x 800 and 256 x 1600, batch 8, on real JPEG files of a synthetic dataset. Each
row is the median over ``--epochs`` timed passes after one warm-up pass. For reference it also
times, on the same images:

- ``in-memory``: the same batches from arrays already in memory (``load_arrays`` then
  ``tf.data.Dataset.from_tensor_slices``), the ceiling for a pipeline that has to decode JPEGs;
- ``pydataset``: the same loader behind ``keras.utils.PyDataset`` with two worker threads, the
  alternative to ``tf.data`` (``--compare-pydataset``).

The dataset is ``steel_keras.synthetic.generate_dataset``'s when that module exists, else a
plain textured-noise one written here with Pillow (1600 x 256 RGB JPEGs, rectangles as masks).

    python benchmarks/bench_pipeline.py [--images 96] [--epochs 3] [--compare-pydataset]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, write_results  # noqa: E402

from steel_keras.data import SteelDataset, make_augmentation  # noqa: E402
from steel_keras.data.annotations import write_annotations  # noqa: E402
from steel_keras.data.pipelines import (  # noqa: E402
    SampleLoader,
    classification_dataset,
    load_arrays,
    segmentation_dataset,
)
from steel_keras.rle import encode_rle  # noqa: E402

SIZES = ((128, 800), (256, 1600))
BATCH = 8


def write_plain_dataset(root: Path, n_train: int, seed: int = 0) -> Path:
    """A Kaggle-layout folder of textured-noise JPEGs with rectangular masks (no other deps)."""
    rng = np.random.default_rng(seed)
    (root / "train_images").mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(n_train):
        image_id = f"{k:09x}.jpg"
        streaks = rng.normal(0, 12, 1600)[None, :]
        gray = 110 + streaks + rng.normal(0, 8, (256, 1600))
        for class_id in rng.choice(4, size=rng.integers(0, 3), replace=False) + 1:
            mask = np.zeros((256, 1600), np.uint8)
            top, left = rng.integers(0, 200), rng.integers(0, 1400)
            mask[top : top + rng.integers(20, 56), left : left + rng.integers(30, 200)] = 1
            gray[mask == 1] += 40
            rows.append((image_id, int(class_id), encode_rle(mask)))
        pixels = np.clip(gray, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).convert("RGB").save(root / "train_images" / image_id, quality=90)
    write_annotations(
        root / "train.csv", pd.DataFrame(rows, columns=["ImageId", "ClassId", "EncodedPixels"])
    )
    return root


def make_dataset(root: Path, n_train: int) -> tuple[SteelDataset, str]:
    try:
        from steel_keras.synthetic import generate_dataset
    except ImportError:
        return SteelDataset(write_plain_dataset(root, n_train)), "plain noise (bench's own)"
    generate_dataset(root, n_train=n_train, n_test=0, seed=0, progress=False)
    return SteelDataset(root), "steel_keras.synthetic"


def time_epochs(make_iter, n_images: int, epochs: int) -> float:
    """Median images/s over ``epochs`` full passes after one warm-up pass."""
    for _ in make_iter():
        pass
    rates = []
    for _ in range(epochs):
        start = time.perf_counter()
        for _ in make_iter():
            pass
        rates.append(n_images / (time.perf_counter() - start))
    return statistics.median(rates)


def pydataset(loader: SampleLoader, workers: int = 2):
    """The alternative to tf.data: the same loader as a keras.utils.PyDataset."""
    import keras

    class Batches(keras.utils.PyDataset):
        def __len__(self) -> int:
            return -(-len(loader) // BATCH)

        def __getitem__(self, i: int):
            samples = [
                loader.load(j, seed=j) for j in range(i * BATCH, min((i + 1) * BATCH, len(loader)))
            ]
            return tuple(np.stack(a) for a in zip(*samples, strict=True))

    return Batches(workers=workers, use_multiprocessing=False, max_queue_size=8)


def iterate_pydataset(batches):
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    # The adapter is what model.fit uses: it runs the worker threads.
    return PyDatasetAdapter(batches, shuffle=False).get_tf_dataset()


def run(ds: SteelDataset, epochs: int, compare_pydataset: bool) -> list[dict]:
    import tensorflow as tf

    ids = ds.train_image_ids
    augment = make_augmentation()
    results = []
    for size in SIZES:
        cases = {
            "segmentation": lambda s=size: segmentation_dataset(
                ds, ids, image_size=s, batch_size=BATCH, augment=augment, shuffle=True
            ),
            "classification": lambda s=size: classification_dataset(
                ds,
                ids,
                image_size=s,
                batch_size=BATCH,
                target="multilabel",
                augment=augment,
                shuffle=True,
            ),
        }
        for name, build in cases.items():
            pipeline = build()
            rate = time_epochs(lambda p=pipeline: p, len(ids), epochs)
            results.append(
                {"pipeline": name, "backend": "tf.data", "size": size, "images_per_s": rate}
            )
        x, y = load_arrays(ds, ids, size)
        in_memory = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)
        rate = time_epochs(lambda m=in_memory: m, len(ids), epochs)
        results.append(
            {"pipeline": "segmentation", "backend": "in-memory", "size": size, "images_per_s": rate}
        )
        del x, y, in_memory
        if compare_pydataset:
            loader = SampleLoader(ds, ids, size, augment=augment)
            batches = pydataset(loader)
            rate = time_epochs(lambda b=batches: iterate_pydataset(b), len(ids), epochs)
            results.append(
                {
                    "pipeline": "segmentation",
                    "backend": "PyDataset (2 threads)",
                    "size": size,
                    "images_per_s": rate,
                }
            )
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=96, help="train images to generate")
    parser.add_argument("--epochs", type=int, default=3, help="timed passes (median)")
    parser.add_argument("--data", type=Path, help="use this Kaggle-layout folder instead")
    parser.add_argument("--compare-pydataset", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.data:
            ds, source = SteelDataset(args.data), str(args.data)
        else:
            ds, source = make_dataset(Path(tmp) / "data", args.images)
        load_before = os.getloadavg()
        results = run(ds, args.epochs, args.compare_pydataset)
        load_after = os.getloadavg()
    for r in results:
        r["size"] = f"{r['size'][0]}x{r['size'][1]}"
        r["images_per_s"] = round(r["images_per_s"], 1)
    rows = [(r["pipeline"], r["backend"], r["size"], r["images_per_s"]) for r in results]
    table = (
        f"Input pipelines, batch {BATCH}, augmentation = flips + brightness/contrast, "
        f"{len(ds.train_image_ids)} images ({source}); median of {args.epochs} epochs "
        f"after 1 warm-up; load average before/after: {load_before[0]:.2f}/"
        f"{load_after[0]:.2f} on {os.cpu_count()} cores.\n\n"
        + markdown_table(["pipeline", "backend", "size", "images/s"], rows)
    )
    write_results(
        "pipeline",
        {
            "batch_size": BATCH,
            "epochs": args.epochs,
            "images": len(ds.train_image_ids),
            "source": source,
            "loadavg_before": load_before,
            "loadavg_after": load_after,
            "results": results,
        },
        table,
    )


if __name__ == "__main__":
    main()
