"""``steel-keras download``: fetch the real Severstal data with the ``kaggle`` command."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "download"
HELP = "download the real Severstal competition data with the kaggle command (needs a token)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare --out, --keep-zip and --quiet."""
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("datasets/severstal"),
        metavar="DIR",
        help="folder to download and unzip into (default: datasets/severstal)",
    )
    parser.add_argument("--keep-zip", action="store_true", help="keep the archive after unzipping")
    parser.add_argument("--quiet", action="store_true", help="hide the kaggle command's output")


def run(args: argparse.Namespace) -> int:
    """Download, unzip and print where the data is."""
    from steel_keras.download import download_competition
    from steel_keras.paths import check_output

    check_output(args.out, kind="dir")

    path = download_competition(args.out, keep_zip=args.keep_zip, quiet=args.quiet)
    print(f"Severstal data in {path}; use it with --data {path}")
    return 0
