"""Throughput of the input pipelines, with augmentation, in images per second.

Times ``segmentation_dataset`` and ``classification_dataset`` (``steel_keras.data.tfdata``)
with :func:`~steel_keras.data.augment.make_augmentation`'s defaults (flips, brightness and
contrast) at 128 x 800 and 256 x 1600, batch 8 (``--batch-size``), on real JPEG files of a
synthetic dataset.
Each row is the median over ``--epochs`` timed passes after one warm-up pass; the rows take
turns pass by pass, so that load from other processes hits them alike. For reference it also
times, on the same images:

- ``tf.data, cache=True``: the pipeline keeping decoded, resized images in memory after the
  warm-up pass (augmentation still runs every epoch), as the ``quick-cpu`` recipe trains;
- ``in-memory``: the same batches, unaugmented, from arrays already in memory (``load_arrays``
  then ``tf.data.Dataset.from_tensor_slices``): the ceiling, what "vs in-memory" divides by;
- ``PyDataset (2 threads)``: the same loader behind ``keras.utils.PyDataset`` with two worker
  threads, the alternative to ``tf.data`` (``--compare-pydataset``).

The dataset is ``steel_keras.synthetic.generate_dataset``'s when that module exists, else a
plain textured-noise one written here with Pillow (1600 x 256 RGB JPEGs, rectangles as masks).

    python benchmarks/bench_pipeline.py [--images 96] [--epochs 5] [--compare-pydataset]
        [--batch-size 8] [--sizes 128x800,256x1600] [--write-as pipeline]

``--write-as NAME`` writes ``results/NAME.{json,md}`` instead of ``pipeline``.
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
from _common import markdown_table, parse_sizes, write_results  # noqa: E402

from steel_keras.data import SteelDataset, make_augmentation  # noqa: E402
from steel_keras.data.annotations import write_annotations  # noqa: E402
from steel_keras.data.tfdata import (  # noqa: E402
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


def time_interleaved(
    cases: dict[tuple[str, str], object], n_images: int, epochs: int
) -> dict[tuple[str, str], tuple[float, float]]:
    """Per case: median images/s (wall clock) and median CPU milliseconds per image.

    Each case gets one warm-up pass, then epoch 1 of every case, epoch 2 of every case, ...:
    on a machine shared with other work, a burst of load then hits every case alike. The CPU
    time (all threads of this process) hardly depends on that load: it says what an image
    costs, where the wall clock says what this machine delivered at that moment.
    """
    for make_iter in cases.values():
        for _ in make_iter():
            pass
    rates: dict[tuple[str, str], list[float]] = {key: [] for key in cases}
    cpu: dict[tuple[str, str], list[float]] = {key: [] for key in cases}
    for _ in range(epochs):
        for key, make_iter in cases.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in make_iter():
                pass
            rates[key].append(n_images / (time.perf_counter() - start))
            cpu[key].append(1000 * (time.process_time() - start_cpu) / n_images)
    return {key: (statistics.median(rates[key]), statistics.median(cpu[key])) for key in cases}


def pydataset(loader: SampleLoader, batch: int, workers: int = 2):
    """The alternative to tf.data: the same loader as a keras.utils.PyDataset."""
    import keras

    class Batches(keras.utils.PyDataset):
        def __len__(self) -> int:
            return -(-len(loader) // batch)

        def __getitem__(self, i: int):
            samples = [
                loader.load(j, seed=j) for j in range(i * batch, min((i + 1) * batch, len(loader)))
            ]
            return tuple(np.stack(a) for a in zip(*samples, strict=True))

    return Batches(workers=workers, use_multiprocessing=False, max_queue_size=8)


def iterate_pydataset(batches):
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    # The adapter is what model.fit uses: it runs the worker threads.
    return PyDatasetAdapter(batches, shuffle=False).get_tf_dataset()


def run(
    ds: SteelDataset,
    epochs: int,
    compare_pydataset: bool,
    batch: int = BATCH,
    sizes: tuple[tuple[int, int], ...] = SIZES,
) -> list[dict]:
    import tensorflow as tf

    ids = ds.train_image_ids
    augment = make_augmentation()
    common = {"batch_size": batch, "augment": augment, "shuffle": True}
    results = []
    for size in sizes:
        x, y = load_arrays(ds, ids, size)
        in_memory = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)
        seg = segmentation_dataset(ds, ids, image_size=size, **common)
        cached = segmentation_dataset(ds, ids, image_size=size, cache=True, **common)
        cls = classification_dataset(ds, ids, image_size=size, target="multilabel", **common)
        cls_cached = classification_dataset(
            ds, ids, image_size=size, target="multilabel", cache=True, **common
        )
        cases = {
            ("segmentation", "in-memory"): lambda m=in_memory: m,
            ("segmentation", "tf.data"): lambda p=seg: p,
            ("segmentation", "tf.data, cache=True"): lambda p=cached: p,
            ("classification", "tf.data"): lambda p=cls: p,
            ("classification", "tf.data, cache=True"): lambda p=cls_cached: p,
        }
        if compare_pydataset:
            batches = pydataset(SampleLoader(ds, ids, size, augment=augment), batch)
            cases["segmentation", "PyDataset (2 threads)"] = lambda b=batches: iterate_pydataset(b)
        timings = time_interleaved(cases, len(ids), epochs)
        for (pipeline, backend), (rate, cpu_ms) in timings.items():
            results.append(
                {
                    "pipeline": pipeline,
                    "backend": backend,
                    "size": size,
                    "images_per_s": rate,
                    "cpu_ms_per_image": cpu_ms,
                }
            )
            print(
                f"  {pipeline:14} {backend:22} {size}: {rate:.1f} images/s, "
                f"{cpu_ms:.2f} CPU ms/image",
                flush=True,
            )
        del x, y, in_memory, cases
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=96, help="train images to generate")
    parser.add_argument("--epochs", type=int, default=5, help="timed passes (median)")
    parser.add_argument("--data", type=Path, help="use this Kaggle-layout folder instead")
    parser.add_argument("--compare-pydataset", action="store_true")
    parser.add_argument("--batch-size", type=int, default=BATCH, help="images per batch")
    parser.add_argument(
        "--sizes",
        default=",".join(f"{h}x{w}" for h, w in SIZES),
        help="comma-separated HxW image sizes",
    )
    parser.add_argument("--write-as", default="pipeline", help="results/NAME.{json,md}")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")
    sizes = parse_sizes(parser, args.sizes)
    with tempfile.TemporaryDirectory() as tmp:
        if args.data:
            ds, source = SteelDataset(args.data), str(args.data)
        else:
            ds, source = make_dataset(Path(tmp) / "data", args.images)
        load_before = os.getloadavg()
        results = run(ds, args.epochs, args.compare_pydataset, args.batch_size, sizes)
        load_after = os.getloadavg()
    in_memory = {r["size"]: r["images_per_s"] for r in results if r["backend"] == "in-memory"}
    for r in results:
        r["share_of_in_memory"] = round(r["images_per_s"] / in_memory[r["size"]], 3)
        r["size"] = f"{r['size'][0]}x{r['size'][1]}"
        r["images_per_s"] = round(r["images_per_s"], 1)
        # What the CPU cost allows on 2 idle cores: an upper bound that assumes both are busy.
        r["two_core_bound_images_per_s"] = round(2000 / r["cpu_ms_per_image"], 1)
        r["cpu_ms_per_image"] = round(r["cpu_ms_per_image"], 2)
    rows = [
        (
            r["pipeline"],
            r["backend"],
            r["size"],
            r["images_per_s"],
            f"{100 * r['share_of_in_memory']:.0f} %",
            r["cpu_ms_per_image"],
            r["two_core_bound_images_per_s"],
        )
        for r in results
    ]
    table = (
        f"Input pipelines, batch {args.batch_size}, augmentation = flips + brightness/contrast, "
        f"{len(ds.train_image_ids)} images ({source}); median of {args.epochs} epochs "
        f"after 1 warm-up; load average before/after: {load_before[0]:.2f}/"
        f"{load_after[0]:.2f} on {os.cpu_count()} cores.\n\n"
        + "`images/s` is the wall clock on this machine as it was (shared: see the load "
        "average); `CPU ms/image` counts all threads of the process and hardly depends on "
        "other load; `2-core bound` = 2000 / CPU ms, what two idle cores could at best "
        "deliver.\n\n"
        + markdown_table(
            [
                "pipeline",
                "backend",
                "size",
                "images/s",
                "vs in-memory",
                "CPU ms/image",
                "2-core bound (images/s)",
            ],
            rows,
        )
    )
    write_results(
        args.write_as,
        {
            "batch_size": args.batch_size,
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
