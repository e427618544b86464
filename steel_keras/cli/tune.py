"""``steel-keras tune``: search the post-processing thresholds of a run on its validation split."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from steel_keras.cli._args import existing_dir, non_negative_int

NAME = "tune"
HELP = "search pixel, minimum-area and classifier thresholds per class on the validation split"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="a trained run directory")
    parser.add_argument("--data", type=existing_dir, default=None,
                        help="the run's data folder (default: the one it was trained on)")
    parser.add_argument("--tta", choices=["none", "hflip", "vflip", "flips"], default="flips")
    parser.add_argument("--min-component", type=non_negative_int, default=0,
                        help="remove connected components under this many pixels (default 0)")


def run(args: argparse.Namespace) -> int:
    from steel_keras.paths import check_output
    from steel_keras.rundir import PIPELINE_FILE, read_config

    read_config(args.run)
    check_output(Path(args.run) / PIPELINE_FILE, what="--run")  # before TensorFlow starts
    from steel_keras.evaluate import tune_run

    settings = tune_run(args.run, args.data, tta=args.tta, min_component=args.min_component)
    print(json.dumps(settings["thresholds"]))
    print(f"validation mean Dice {settings['search']['mean_dice']:.4f}; saved to "
          f"{args.run}/pipeline.json")
    return 0
