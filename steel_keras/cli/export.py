"""``steel-keras export``: a run's models for another runtime (the registry's formats), checked."""

from __future__ import annotations

import argparse
from pathlib import Path

from steel_keras.cli._args import existing_dir, non_negative_int, positive_int
from steel_keras.deploy.registry import RUNTIMES, export_formats, precisions

NAME = "export"
HELP = ("export a run's classifier and segmenter(s) to " + ", ".join(export_formats())
        + " and check them against Keras on real images (parity.json)")


def _format_help() -> str:
    """One clause per format: its runtimes' one-line summaries and precisions."""
    parts = []
    for fmt in export_formats():
        made = [f"{r.summary} [{'/'.join(r.precisions)}]"
                for r in RUNTIMES.values() if r.export_format == fmt]
        parts.append(f"{fmt}: {'; '.join(made)}")
    return ". ".join(parts)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="a trained run directory")
    parser.add_argument("--format", required=True, choices=export_formats(), dest="fmt",
                        help=_format_help())
    parser.add_argument("--precision", choices=precisions(), default="fp32",
                        help="fp32 (default); which others a format takes is in brackets "
                             "above")
    parser.add_argument("--batch", type=positive_int, default=8,
                        help="batch the engines are tuned for, and the parity check's (8)")
    parser.add_argument("--opset", type=positive_int, default=17, help="ONNX opset (17)")
    parser.add_argument("--data", type=existing_dir, default=None,
                        help="images for the parity check and INT8 calibration (default: the "
                             "run's data)")
    parser.add_argument("--parity-images", type=non_negative_int, default=8,
                        help="images compared with Keras per model; 0 skips the check (8)")
    parser.add_argument("--calibration-images", type=positive_int, default=64,
                        help="INT8 calibration images (64)")
    parser.add_argument("--workspace-gb", type=float, default=4.0,
                        help="TensorRT workspace limit in GiB (4)")
    parser.add_argument("--stage", choices=("all", "classifier", "segmenter"), default="all",
                        help="which models to export (all)")


def run(args: argparse.Namespace) -> int:
    from steel_keras.paths import check_output
    from steel_keras.rundir import EXPORT_DIR, read_config

    read_config(args.run)
    check_output(Path(args.run) / EXPORT_DIR, kind="dir", what="--run")  # before TensorFlow
    from steel_keras.deploy import export_run

    stages = ("classifier", "segmenter") if args.stage == "all" else (args.stage,)
    result = export_run(args.run, args.fmt, precision=args.precision, batch=args.batch,
                        opset=args.opset, data=args.data, parity_images=args.parity_images,
                        calibration_images=args.calibration_images,
                        workspace_gb=args.workspace_gb, stages=stages, log=print)
    off = [name for name, p in result.parity.items() if p and not p["within_bars"]]
    if off and args.precision == "fp32":
        print(f"note: {', '.join(off)} differ from Keras by more than max |diff| 1e-3 or Dice "
              "agreement 0.999; see parity.json")
    print(f"wrote {len(result.files)} {result.runtime} export(s) under "
          f"{args.run}/export/{result.fmt}")
    return 0
