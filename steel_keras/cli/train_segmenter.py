"""``steel-keras train-segmenter``: train the segmenter(s) of a recipe."""

from __future__ import annotations

import argparse

from steel_keras.cli._train_args import add_common, announce, overrides, report
from steel_keras.recipes import key_help, load_recipe

NAME = "train-segmenter"
HELP = "train the segmenter: one 4-channel model, or one model per class"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser, "runs/baseline", "segmenter")
    parser.add_argument(
        "--arch",
        help="override the recipe's arch with one architecture: "
        "unet, fpn, linknet, unet_xception or unet_separable",
    )
    parser.add_argument(
        "--backbone", help="override the recipe's backbone: " + key_help("segmenter", "backbone")
    )
    parser.add_argument(
        "--mode",
        choices=["multilabel", "per_class"],
        help="override the recipe's mode: " + key_help("segmenter", "mode"),
    )


def run(args: argparse.Namespace) -> int:
    values = overrides(args, arch=args.arch, backbone=args.backbone, mode=args.mode)
    # Bad keys: one line, before TensorFlow starts.
    announce(load_recipe(args.recipe, segmenter=values))
    from steel_keras.train import train_segmenter

    report(train_segmenter(args.data, args.out, args.recipe, values, restart=args.restart))
    return 0
