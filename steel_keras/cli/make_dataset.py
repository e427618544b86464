"""``steel-keras make-dataset``: write a synthetic Severstal-like dataset in Kaggle's layout.

With ``--compare-real DIR`` it then measures the synthetic train images against a folder of
real images, prints the statistics' real and synthetic median [IQR] as a Markdown table and
writes a side-by-side PNG.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from steel_keras.cli._args import existing_dir, non_negative_int, positive_int

NAME = "make-dataset"
HELP = "write a synthetic Severstal-like dataset (Kaggle layout) for the course and baseline"

# Kept equal to steel_keras.synthetic's defaults without importing it (``--help`` stays fast);
# tests/test_synthetic.py checks that they agree.
DEFAULT_TRAIN = 1000
DEFAULT_TEST = 200
DEFAULT_SEED = 2019
DEFAULT_COMPARE_IMAGES = 100


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the dataset's size and seed, workers, --quiet and the --compare-real options."""
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder to write: new, empty, or a synthetic dataset to replace "
        "(default: $STEEL_KERAS_DATA or datasets/synthetic)",
    )
    parser.add_argument(
        "--train",
        type=non_negative_int,
        default=DEFAULT_TRAIN,
        metavar="N",
        help=f"number of train images (default {DEFAULT_TRAIN})",
    )
    parser.add_argument(
        "--test",
        type=non_negative_int,
        default=DEFAULT_TEST,
        metavar="M",
        help=f"number of test images (default {DEFAULT_TEST})",
    )
    parser.add_argument(
        "--seed",
        type=non_negative_int,
        default=DEFAULT_SEED,
        metavar="S",
        help=f"random seed; the same seed gives the same files (default {DEFAULT_SEED})",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        metavar="K",
        help="processes to draw images in (default: 2 for large datasets)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--compare-real",
        type=existing_dir,
        default=None,
        metavar="DIR",
        help="then compare the synthetic train images with the real images in DIR (a folder "
        "of JPEGs, or a Kaggle-layout folder): print the statistics and write a PNG",
    )
    parser.add_argument(
        "--compare-images",
        type=positive_int,
        default=DEFAULT_COMPARE_IMAGES,
        metavar="N",
        help=f"synthetic train images to measure (default {DEFAULT_COMPARE_IMAGES})",
    )
    parser.add_argument(
        "--compare-png",
        type=Path,
        default=None,
        metavar="PATH",
        help="side-by-side PNG to write (default: real_vs_synthetic.png in the dataset folder)",
    )


def _check_compare_args(args: argparse.Namespace) -> None:
    """Refuse a comparison that cannot run, before any image is drawn."""
    from steel_keras.errors import DataError
    from steel_keras.synthetic.realism import image_files

    if args.compare_real is None:
        return
    if args.train == 0:
        raise DataError("--compare-real compares train images; ask for --train 1 or more")
    image_files(args.compare_real)  # raises if the folder holds no image
    png = args.compare_png
    if png is not None and not png.expanduser().parent.is_dir():
        raise DataError(f"--compare-png {png}: folder {png.expanduser().parent} does not exist")


def _compare(args: argparse.Namespace, path: Path) -> None:
    """Print the real-against-synthetic table and write the side-by-side PNG."""
    from steel_keras.synthetic import COMPARE_PNG
    from steel_keras.synthetic.realism import (
        compare_folders,
        format_comparison,
        write_side_by_side,
    )

    comparison = compare_folders(args.compare_real, path, max_synthetic=args.compare_images)
    print()
    print(format_comparison(comparison))
    inside = len(comparison.real) - len(comparison.outside)
    print(f"{inside} of {len(comparison.real)} synthetic medians inside the real IQR")
    png = args.compare_png.expanduser() if args.compare_png is not None else path / COMPARE_PNG
    print(f"side by side: {write_side_by_side(args.compare_real, path, png)}")


def run(args: argparse.Namespace) -> int:
    """Generate the dataset, print where it is, and compare it with real images if asked."""
    from steel_keras.errors import DataError
    from steel_keras.paths import default_data_dir
    from steel_keras.synthetic import generate_dataset

    if args.train + args.test == 0:
        raise DataError("--train and --test are both 0; ask for at least one image")
    _check_compare_args(args)
    out = args.out if args.out is not None else default_data_dir()
    start = time.perf_counter()
    path = generate_dataset(
        out, args.train, args.test, args.seed, progress=not args.quiet, workers=args.workers
    )
    seconds = time.perf_counter() - start
    print(
        f"wrote {args.train} train and {args.test} test images (seed {args.seed}) to {path} "
        f"in {seconds:.1f} s"
    )
    if args.compare_real is not None:
        _compare(args, path)
    return 0
