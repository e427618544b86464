"""``steel-keras benchmark``: the same real batches through every available runtime."""

from __future__ import annotations

import argparse

from steel_keras.cli._args import existing_dir, non_negative_int, positive_int
from steel_keras.deploy.registry import names

NAME = "benchmark"
HELP = ("time every runtime (" + ", ".join(names()) + ") on a run's models: throughput, "
        "p50/p95 latency, peak memory, parity with Keras")


def runtime_list(text: str) -> list[str]:
    """Comma-separated runtime names, each in the registry."""
    chosen = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in names()]
    if unknown or not chosen:
        bad = unknown[0] if unknown else text
        raise argparse.ArgumentTypeError(
            f"unknown runtime {bad!r}: choose from {','.join(names())}")
    return chosen


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="a trained run directory")
    parser.add_argument("--runtimes", type=runtime_list, default=names(),
                        help="comma-separated, from " + ",".join(names()) + " (default: all; "
                             "keras always runs, as the reference)")
    parser.add_argument("--batch", type=positive_int, default=8, help="images per batch (8)")
    parser.add_argument("--iterations", type=positive_int, default=10,
                        help="timed batches per runtime and round (10)")
    parser.add_argument("--warmup", type=non_negative_int, default=2,
                        help="untimed batches first (2)")
    parser.add_argument("--rounds", type=positive_int, default=1,
                        help="runs per runtime, taking turns (1)")
    parser.add_argument("--stage", choices=("segmenter", "classifier"), default="segmenter",
                        help="which models to time (segmenter)")
    parser.add_argument("--data", type=existing_dir, default=None,
                        help="dataset for the batches (default: the run's)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")


def run(args: argparse.Namespace) -> int:
    from steel_keras.rundir import check_run_output, read_config, write_json

    read_config(args.run)
    if args.json:
        check_run_output(args.json, args.run, args.data, what="--json")  # before the timing
    from steel_keras.deploy import benchmark_run, markdown_report

    result = benchmark_run(args.run, args.runtimes, batch=args.batch,
                           iterations=args.iterations, warmup=args.warmup, stage=args.stage,
                           data=args.data, rounds=args.rounds,
                           log=lambda line: print(line, flush=True))
    print()
    print(markdown_report(result), end="")
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0
