"""``steel-keras train-segmenter``: train the segmenter(s) of a recipe."""

from __future__ import annotations

import argparse
import json

from steel_keras.cli._train_args import add_common, overrides

NAME = "train-segmenter"
HELP = "train the segmenter: one 4-channel model, or one model per class"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser, "runs/baseline")
    parser.add_argument("--arch", help="unet, fpn, linknet, unet_xception or unet_separable "
                                       "(default: the recipe's)")
    parser.add_argument("--backbone", help="encoder of unet/fpn/linknet, e.g. resnet18, "
                                           "efficientnetb0 (default: the recipe's)")
    parser.add_argument("--mode", choices=["multilabel", "per_class"],
                        help="one 4-channel model or one model per class (default: recipe's)")


def run(args: argparse.Namespace) -> int:
    from steel_keras.train import train_segmenter

    result = train_segmenter(args.data, args.out, args.recipe,
                             overrides(args, arch=args.arch, backbone=args.backbone,
                                       mode=args.mode))
    print(json.dumps(result.summary, indent=2))
    print("segmenter saved to " + ", ".join(str(p) for p in result.model_paths))
    return 0
