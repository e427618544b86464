"""``steel-keras baseline``: the whole baseline, end to end, on the synthetic or the real data."""

from __future__ import annotations

import argparse

from steel_keras.cli._args import existing_dir

NAME = "baseline"
HELP = ("train the classifier and segmenter, tune thresholds, evaluate every stage and write "
        "submission.csv (synthetic data by default)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=existing_dir, default=None,
                        help="Kaggle-layout folder (default: the synthetic dataset, made on "
                             "first use)")
    parser.add_argument("--out", default="runs/baseline", help="run directory "
                                                               "(default: runs/baseline)")
    parser.add_argument("--recipe", default="quick-cpu",
                        help="quick-cpu (default), unet-bce-25, kaggle-1st-place-lite, or a "
                             ".json recipe")
    parser.add_argument("--tta", choices=["none", "hflip", "vflip", "flips"], default="flips",
                        help="test-time augmentation (default: flips, both averaged)")


def run(args: argparse.Namespace) -> int:
    from steel_keras.evaluate import ablation_table, run_baseline

    metrics = run_baseline(args.data, args.out, args.recipe, args.tta)
    print()
    print(f"Held-out: {metrics['images']} images, {metrics['held_out']}")
    print(ablation_table(metrics))
    print(f"report: {args.out}/report.md   submission: {args.out}/submission.csv   "
          f"total {metrics['timings_s']['total']:.0f} s")
    return 0
