"""``steel-keras evaluate``: the competition metric for every stage of a run's pipeline."""

from __future__ import annotations

import argparse

from steel_keras.cli._args import existing_dir

NAME = "evaluate"
HELP = "score all-empty, segmenter only, + classifier, + post-processing, + TTA on held-out images"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="a trained run directory")
    parser.add_argument("--data", type=existing_dir, default=None,
                        help="data folder (default: the one the run was trained on)")
    parser.add_argument("--out", default=None, help="where to write metrics.json, report.md "
                                                    "and plots (default: the run directory)")


def run(args: argparse.Namespace) -> int:
    from steel_keras.rundir import check_run_output

    check_run_output(args.out or args.run, args.run, args.data, kind="dir")  # before TensorFlow
    from steel_keras.evaluate import ablation_table, evaluate_run

    metrics = evaluate_run(args.run, args.data, args.out)
    print(f"Held-out: {metrics['images']} images, {metrics['held_out']}")
    print(ablation_table(metrics))
    print(f"wrote {args.out or args.run}/metrics.json and report.md")
    return 0
