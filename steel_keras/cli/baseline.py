"""``steel-keras baseline``: the whole baseline, end to end, on the synthetic or the real data."""

from __future__ import annotations

import argparse

from steel_keras.cli._train_args import add_run_args, announce
from steel_keras.recipes import load_recipe

NAME = "baseline"
HELP = (
    "train the classifier and segmenter, tune thresholds, evaluate every stage and write "
    "submission.csv (synthetic data by default)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_args(parser, "runs/baseline")
    parser.add_argument(
        "--tta",
        choices=["none", "hflip", "vflip", "flips"],
        default="flips",
        help="test-time augmentation (default: flips, both averaged)",
    )


def run(args: argparse.Namespace) -> int:
    announce(load_recipe(args.recipe))  # a bad recipe: one line, before TensorFlow
    from steel_keras.evaluate import ablation_table, run_baseline

    metrics = run_baseline(args.data, args.out, args.recipe, args.tta, restart=args.restart)
    print()
    print(f"Held-out: {metrics['images']} images, {metrics['held_out']}")
    print(ablation_table(metrics))
    print(
        f"report: {args.out}/report.md   submission: {args.out}/submission.csv   "
        f"total {metrics['timings_s']['total']:.0f} s"
    )
    return 0
