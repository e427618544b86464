"""``steel-keras train-classifier``: train the binary defect classifier of a recipe."""

from __future__ import annotations

import argparse
import json

from steel_keras.cli._train_args import add_common, overrides

NAME = "train-classifier"
HELP = "train the defect / no-defect classifier (quick-cpu recipe by default)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser, "runs/baseline")
    parser.add_argument("--backbone", help="xception, efficientnetb0, mobilenetv2, resnet50 or "
                                           "small_cnn (default: the recipe's)")


def run(args: argparse.Namespace) -> int:
    from steel_keras.train import train_classifier

    result = train_classifier(args.data, args.out, args.recipe,
                              overrides(args, backbone=args.backbone))
    print(json.dumps(result.summary, indent=2))
    print(f"classifier saved to {result.model_paths[0]}")
    return 0
