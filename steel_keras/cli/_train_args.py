"""Arguments shared by ``train-classifier``, ``train-segmenter`` and ``baseline``.

The help of each flag that overrides a recipe key comes from the recipe schema
(``steel_keras.recipes.SCHEMA``), and so do the checks of its value.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from steel_keras.cli._args import existing_dir, positive_int
from steel_keras.errors import OutputError
from steel_keras.paths import check_output
from steel_keras.recipes import DEFAULT_RECIPE, MIXED_PRECISION_VALUES, key_help, list_recipes


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


def run_dir(text: str) -> Path:
    """A folder to write a run in: not a file, and writable (checked before TensorFlow)."""
    try:
        return check_output(text, kind="dir", what="--out")
    except OutputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_run_args(parser: argparse.ArgumentParser, default_out: str) -> None:
    """``--data``, ``--recipe``, ``--out`` and ``--restart``."""
    parser.add_argument(
        "--data",
        type=existing_dir,
        default=None,
        help="Kaggle-layout folder (default: the synthetic dataset, made on first use)",
    )
    parser.add_argument(
        "--recipe",
        default=DEFAULT_RECIPE,
        help=f"recipe name ({', '.join(list_recipes())}) or a path to a .json "
        f"recipe (default: {DEFAULT_RECIPE}; its keys: see the README)",
    )
    parser.add_argument(
        "--out", type=run_dir, default=default_out, help=f"run directory (default: {default_out})"
    )
    parser.add_argument(
        "--restart",
        action="store_true",
        help="remove what this command trained in --out before and train again "
        "(a finished stage is otherwise left as it is)",
    )


def add_common(parser: argparse.ArgumentParser, default_out: str, stage: str) -> None:
    """The run arguments and the overrides of a stage's recipe keys."""
    add_run_args(parser, default_out)

    def override(name: str) -> str:
        return f"override the recipe's {name}: {key_help(stage, name)}"

    parser.add_argument("--epochs", type=positive_int, help=override("epochs"))
    parser.add_argument("--batch-size", type=positive_int, help=override("batch_size"))
    parser.add_argument(
        "--image-size", type=image_size, help=override("image_size") + ", written HxW"
    )
    parser.add_argument("--learning-rate", type=float, help=override("learning_rate"))
    parser.add_argument(
        "--mixed-precision", choices=MIXED_PRECISION_VALUES, help=override("mixed_precision")
    )
    parser.add_argument(
        "--devices", type=device_list, help=override("devices") + ", written /gpu:0,/gpu:1"
    )


def overrides(args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    """The recipe keys given on the command line (flags left out are not overrides)."""
    values = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "image_size": list(args.image_size) if args.image_size else None,
        "learning_rate": args.learning_rate,
        "mixed_precision": args.mixed_precision,
        "devices": args.devices,
        **extra,
    }
    return {k: v for k, v in values.items() if v is not None}


def announce(recipe: dict[str, Any]) -> None:
    """Say which recipe trains: its name, what it reproduces and what it is."""
    line = f"recipe {recipe['name']}"
    if recipe["reproduces"]:
        line += f" (reproduces {recipe['reproduces']})"
    if recipe["description"]:
        line += f": {recipe['description']}"
    print(line, flush=True)


def report(result: Any) -> None:
    """Print a stage's summary and where its models are, or that it had finished before."""
    import json

    if result.already_trained:
        print(
            f"{result.stage} already trained in {result.run_dir / result.stage} "
            "(nothing changed); use --restart to train it again"
        )
    print(json.dumps(result.summary, indent=2))
    print(f"{result.stage} saved to " + ", ".join(str(p) for p in result.model_paths))
