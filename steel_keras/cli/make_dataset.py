"""``steel-keras make-dataset``: write a synthetic Severstal-like dataset in Kaggle's layout."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from steel_keras.cli._args import non_negative_int, positive_int

NAME = "make-dataset"
HELP = "write a synthetic Severstal-like dataset (Kaggle layout) for the course and baseline"

# Kept equal to steel_keras.synthetic's defaults without importing it (``--help`` stays fast);
# tests/test_synthetic.py checks that they agree.
DEFAULT_TRAIN = 1000
DEFAULT_TEST = 200
DEFAULT_SEED = 2019


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare --out, --train, --test, --seed, --workers, --overwrite and --quiet."""
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder to write (default: $STEEL_KERAS_DATA or datasets/synthetic)",
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
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the images and CSV files of a folder that is not a synthetic dataset",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Generate the dataset and print where it is."""
    from steel_keras.errors import DataError
    from steel_keras.paths import default_data_dir
    from steel_keras.synthetic import generate_dataset

    if args.train + args.test == 0:
        raise DataError("--train and --test are both 0; ask for at least one image")
    out = args.out if args.out is not None else default_data_dir()
    start = time.perf_counter()
    path = generate_dataset(
        out,
        args.train,
        args.test,
        args.seed,
        progress=not args.quiet,
        overwrite=args.overwrite,
        workers=args.workers,
    )
    seconds = time.perf_counter() - start
    print(
        f"wrote {args.train} train and {args.test} test images (seed {args.seed}) to {path} "
        f"in {seconds:.1f} s"
    )
    return 0
