"""``steel-keras predict``: a Kaggle submission for every image in ``test_images/``."""

from __future__ import annotations

import argparse

from steel_keras.cli._args import existing_dir
from steel_keras.deploy.registry import names

NAME = "predict"
HELP = "predict every test image and write submission.csv in the sample submission's format"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="a trained run directory")
    parser.add_argument("--data", type=existing_dir, default=None,
                        help="folder with test_images/ (default: the run's data)")
    parser.add_argument("--out", default="submission.csv", help="the CSV to write")
    parser.add_argument("--runtime", default="keras", choices=names(),
                        help="keras (default); the runtimes of an export need "
                             "`steel-keras export` first")


def run(args: argparse.Namespace) -> int:
    from steel_keras.evaluate import predict_run

    path = predict_run(args.run, args.data, args.out, runtime=args.runtime)
    print(f"wrote {path}")
    return 0
