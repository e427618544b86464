"""``steel-keras train-classifier``: train the binary defect classifier of a recipe."""

from __future__ import annotations

import argparse

from steel_keras.cli._train_args import add_common, announce, overrides, report
from steel_keras.recipes import key_help, load_recipe

NAME = "train-classifier"
HELP = "train the defect / no-defect classifier (quick-cpu recipe by default)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser, "runs/baseline", "classifier")
    parser.add_argument(
        "--backbone", help="override the recipe's backbone: " + key_help("classifier", "backbone")
    )


def run(args: argparse.Namespace) -> int:
    values = overrides(args, backbone=args.backbone)
    # Bad keys: one line, before TensorFlow starts.
    announce(load_recipe(args.recipe, classifier=values))
    from steel_keras.train import train_classifier

    report(train_classifier(args.data, args.out, args.recipe, values, restart=args.restart))
    return 0
