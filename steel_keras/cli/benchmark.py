"""``steel-keras benchmark``: the same real batches through every available runtime."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from steel_keras.cli._args import existing_dir, non_negative_int, positive_int

NAME = "benchmark"
HELP = ("time keras, tf_function, tf_bf16, savedmodel, onnx, onnx_int8, tensorrt and tftrt on "
        "a run's models: throughput, p50/p95 latency, peak memory, parity with Keras")
# steel_keras.deploy.RUNTIMES, copied: importing the deploy package (numpy) at every command's
# start-up would cost ~0.1 s; tests/test_deploy.py checks that the two stay equal.
RUNTIMES = ("keras", "tf_function", "tf_bf16", "savedmodel", "onnx", "onnx_int8", "tensorrt",
            "tftrt")


def runtime_list(text: str) -> list[str]:
    """Comma-separated runtime names."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in RUNTIMES]
    if unknown or not names:
        bad = unknown[0] if unknown else text
        raise argparse.ArgumentTypeError(
            f"unknown runtime {bad!r}: choose from {','.join(RUNTIMES)}")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="a trained run directory")
    parser.add_argument("--runtimes", type=runtime_list, default=list(RUNTIMES),
                        help="comma-separated, from " + ",".join(RUNTIMES) + " (default: all; "
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
    from steel_keras.deploy import benchmark_run, markdown_report

    result = benchmark_run(args.run, args.runtimes, batch=args.batch,
                           iterations=args.iterations, warmup=args.warmup, stage=args.stage,
                           data=args.data, rounds=args.rounds,
                           log=lambda line: print(line, flush=True))
    print()
    print(markdown_report(result), end="")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
