"""Synthetic dataset generation speed, and (with ``--full``) the default dataset's statistics.

Times ``generate_dataset`` on small datasets (``--images`` images, train:test 4:1) with one and
with two worker processes, the median of ``--repeats`` runs each, plus the CPU time per image
of its steps in this process (drawing, JPEG encoding, RLE encoding), which depends less on
what else the machine is running. The load average is recorded: on a shared machine the
wall-clock numbers are only as good as the cores that were free.

``--full`` also generates the default dataset (1,000 train + 200 test images, seed 2019) once,
times it, and measures what the tests check against the real data: defect-free share, class
shares, multi-class share, median mask areas and the all-empty submission's score on the test
set. With ``--real DIR`` (a folder of real images) it also compares the first 100 train images'
whole-image statistics with the real ones (``steel_keras.synthetic.realism``).

Writes ``results/synthetic.json`` and ``results/synthetic.md``.

    python benchmarks/bench_synthetic.py [--images 50] [--repeats 3] [--full [--real DIR]]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, write_results  # noqa: E402

from steel_keras.rle import encode_rle  # noqa: E402
from steel_keras.synthetic import (  # noqa: E402
    DEFAULT_SEED,
    DEFAULT_TEST,
    DEFAULT_TRAIN,
    JPEG_QUALITY,
    generate_dataset,
    render_image,
)
from steel_keras.synthetic.realism import compare_folders, format_comparison  # noqa: E402


def time_generation(n_images: int, workers: int, repeats: int) -> dict:
    """Median wall time of generating ``n_images`` with ``workers`` processes, fresh folders."""
    n_test = n_images // 5
    times = []
    for repeat in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            generate_dataset(
                Path(tmp) / "d",
                n_images - n_test,
                n_test,
                seed=repeat,
                progress=False,
                workers=workers,
            )
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {
        "images": n_images,
        "workers": workers,
        "runs_s": [round(t, 3) for t in times],
        "median_s": round(median, 3),
        "images_per_s": round(n_images / median, 1),
    }


def cpu_per_step(n_images: int) -> dict:
    """CPU milliseconds per image of drawing, JPEG encoding and RLE encoding, in this process."""
    render_image(0, "train", 0)  # builds the texture bank outside the timing
    cpu = {"draw": 0.0, "jpeg": 0.0, "rle": 0.0}
    for index in range(n_images):
        t0 = time.process_time()
        image, masks = render_image(DEFAULT_SEED, "train", index)
        t1 = time.process_time()
        Image.fromarray(image, "L").convert("RGB").save(io.BytesIO(), "JPEG", quality=JPEG_QUALITY)
        t2 = time.process_time()
        [encode_rle(mask) for mask in masks.values()]
        t3 = time.process_time()
        cpu["draw"] += t1 - t0
        cpu["jpeg"] += t2 - t1
        cpu["rle"] += t3 - t2
    per_image = {k: round(1000 * v / n_images, 2) for k, v in cpu.items()}
    per_image["total"] = round(sum(per_image.values()), 2)
    return per_image


def dataset_statistics(folder: Path) -> dict:
    """The figures the tests compare with the real data, over train and test together."""
    from steel_keras.data.annotations import Annotations, load_annotations, write_submission
    from steel_keras.metrics.competition import score_files

    tables = [load_annotations(folder / name).table for name in ("train.csv", "test_truth.csv")]
    table = pd.concat(tables, ignore_index=True)
    n_images = sum(len(list((folder / f"{s}_images").glob("*.jpg"))) for s in ("train", "test"))
    per_image = table.groupby("ImageId")["ClassId"].count()
    areas = table["EncodedPixels"].map(lambda rle: sum(map(int, rle.split()[1::2])))
    test_ids = [p.name for p in (folder / "test_images").glob("*.jpg")]
    with tempfile.TemporaryDirectory() as tmp:
        empty = write_submission(Path(tmp) / "empty.csv", Annotations.empty(test_ids))
        empty_score = score_files(empty, folder / "test_truth.csv").competition_dice
    shares = table["ClassId"].value_counts(normalize=True)
    return {
        "images": n_images,
        "masks": len(table),
        "defect_free_share": round(1 - per_image.size / n_images, 4),
        "class_share": {str(c): round(float(shares.get(c, 0)), 4) for c in (1, 2, 3, 4)},
        "multi_class_share_of_defective": round(float((per_image > 1).mean()), 4),
        "three_class_images": int((per_image > 2).sum()),
        "median_area": {str(c): float(areas[table["ClassId"] == c].median()) for c in (1, 2, 3, 4)},
        "all_empty_test_score": round(float(empty_score), 5),
    }


def full_run(real: Path | None) -> dict:
    """Generate the default dataset once with two workers; its time and statistics."""
    realism = None
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        out = generate_dataset(
            Path(tmp) / "d", DEFAULT_TRAIN, DEFAULT_TEST, DEFAULT_SEED, progress=False, workers=2
        )
        seconds = time.perf_counter() - start
        stats = dataset_statistics(out)
        if real is not None:
            realism = compare_folders(real, out, max_synthetic=100)
    n = DEFAULT_TRAIN + DEFAULT_TEST
    return {
        "images": n,
        "seconds": round(seconds, 1),
        "images_per_s": round(n / seconds, 1),
        "statistics": stats,
        "realism": None if realism is None else asdict(realism),
        "realism_table": None if realism is None else format_comparison(realism),
    }


REAL = {  # shared/reference/severstal_facts.md, and medians of the 1,429 public real masks
    "defect_free_share": "0.470",
    "class_share": "0.126 / 0.035 / 0.726 / 0.113",
    "multi_class_share_of_defective": "0.064",
    "median_area": "3162 / 2862 / 10488 / 24989",
    "all_empty_test_score": "0.8556 (public LB)",
}


def statistics_table(stats: dict) -> str:
    def four(d: dict, fmt: str) -> str:
        return " / ".join(format(d[str(c)], fmt) for c in (1, 2, 3, 4))

    rows = [
        ("defect-free share", f"{stats['defect_free_share']:.3f}", REAL["defect_free_share"]),
        ("mask share, classes 1/2/3/4", four(stats["class_share"], ".3f"), REAL["class_share"]),
        (
            "multi-class share of defective images",
            f"{stats['multi_class_share_of_defective']:.3f}",
            REAL["multi_class_share_of_defective"],
        ),
        (
            "median mask area (px), classes 1/2/3/4",
            four(stats["median_area"], ".0f"),
            REAL["median_area"],
        ),
        (
            "all-empty submission, test set",
            f"{stats['all_empty_test_score']:.4f}",
            REAL["all_empty_test_score"],
        ),
    ]
    return markdown_table(["statistic", "synthetic", "real"], rows)


def report(speed: list[dict], cpu: dict, full: dict | None, load: tuple) -> str:
    rows = [(r["images"], r["workers"], r["median_s"], r["images_per_s"]) for r in speed]
    text = (
        f"Synthetic generation, median of {len(speed[0]['runs_s'])} runs "
        f"({os.cpu_count()} CPUs, load average {load[0]:.1f} at start):\n\n"
    )
    text += markdown_table(["images", "workers", "seconds", "images / s"], rows)
    text += (
        f"\nCPU per image in one process: {cpu['total']} ms (draw {cpu['draw']}, "
        f"JPEG {cpu['jpeg']}, RLE {cpu['rle']}), i.e. {1000 / cpu['total']:.0f} images/s "
        "per free core.\n"
    )
    if full:
        text += (
            f"\nDefault dataset ({full['images']} images, seed {DEFAULT_SEED}, 2 workers): "
            f"{full['seconds']} s, {full['images_per_s']} images/s.\n\n"
        )
        text += statistics_table(full["statistics"])
        if full["realism_table"]:
            text += "\nWhole-image statistics, real against synthetic:\n\n" + full["realism_table"]
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--full", action="store_true", help="also time the default dataset")
    parser.add_argument("--real", type=Path, default=None, help="real images to compare with")
    args = parser.parse_args()
    load = os.getloadavg()
    speed = [time_generation(args.images, w, args.repeats) for w in (1, 2)]
    cpu = cpu_per_step(args.images)
    full = full_run(args.real) if args.full else None
    payload = {
        "load_average_at_start": [round(x, 2) for x in load],
        "generation": speed,
        "cpu_ms_per_image": cpu,
        "full": full,
    }
    write_results("synthetic", payload, report(speed, cpu, full, load))


if __name__ == "__main__":
    main()
