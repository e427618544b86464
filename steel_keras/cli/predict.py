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
    parser.add_argument("--out", default="submission.csv",
                        help="the CSV to write; it may replace an earlier submission, never a "
                             "file of the run or of the data folder (default: submission.csv)")
    parser.add_argument("--runtime", default="keras", choices=names(),
                        help="keras (default); the runtimes of an export need "
                             "`steel-keras export` first")


def run(args: argparse.Namespace) -> int:
    from steel_keras.rundir import check_run_output

    check_run_output(args.out, args.run, args.data)  # before TensorFlow starts
    from steel_keras.evaluate import predict_run

    path = predict_run(args.run, args.data, args.out, runtime=args.runtime)
    print(f"wrote {path}")
    return 0
