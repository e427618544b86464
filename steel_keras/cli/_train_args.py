"""Arguments shared by ``train-classifier`` and ``train-segmenter``."""

from __future__ import annotations

import argparse
from typing import Any

from steel_keras.cli._args import existing_dir, positive_int


def image_size(text: str) -> tuple[int, int]:
    """``HxW``, e.g. ``128x800``."""
    parts = text.lower().split("x")
    try:
        height, width = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not HEIGHTxWIDTH, e.g. 128x800") from None
    if height < 1 or width < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: height and width must be positive")
    return height, width


def device_list(text: str) -> list[str]:
    """``/gpu:0,/gpu:1``: TensorFlow device names."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r}: give device names such as /gpu:0,/gpu:1")
    return names


def add_common(parser: argparse.ArgumentParser, default_out: str) -> None:
    parser.add_argument("--data", type=existing_dir, default=None,
                        help="Kaggle-layout folder (default: the synthetic dataset, made on "
                             "first use)")
    parser.add_argument("--recipe", default="quick-cpu",
                        help="recipe name (quick-cpu, unet-bce-25, kaggle-1st-place-lite) or a "
                             "path to a .json recipe (default: quick-cpu)")
    parser.add_argument("--out", default=default_out, help=f"run directory (default: "
                                                           f"{default_out})")
    parser.add_argument("--epochs", type=positive_int, help="override the recipe's epochs")
    parser.add_argument("--batch-size", type=positive_int, help="override the batch size")
    parser.add_argument("--image-size", type=image_size, help="override the image size, HxW")
    parser.add_argument("--learning-rate", type=float, help="override the learning rate")
    parser.add_argument("--mixed-precision", choices=["auto", "off", "float16", "bfloat16"],
                        help="dtype policy: auto = mixed float16 on a GPU, float32 elsewhere "
                             "(default: the recipe's, else auto)")
    parser.add_argument("--devices", type=device_list,
                        help="comma-separated devices to train on, e.g. /gpu:0,/gpu:1 "
                             "(MirroredStrategy over several; default: every GPU)")


def overrides(args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    values = {"epochs": args.epochs, "batch_size": args.batch_size,
              "image_size": list(args.image_size) if args.image_size else None,
              "learning_rate": args.learning_rate, "mixed_precision": args.mixed_precision,
              "devices": args.devices, **extra}
    return {k: v for k, v in values.items() if v is not None}
