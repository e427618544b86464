"""``steel-keras score``: the competition's mean Dice of a submission against the true masks."""

from __future__ import annotations

import argparse
import json

from steel_keras.cli._args import existing_file

NAME = "score"
HELP = "score a submission CSV with the competition's mean Dice against a ground-truth CSV"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare SUBMISSION, --truth, --images and --json."""
    parser.add_argument("submission", type=existing_file, metavar="SUBMISSION",
                        help="submission CSV (ImageId,EncodedPixels,ClassId or "
                             "ImageId_ClassId,EncodedPixels), one row per image and class")
    parser.add_argument("--truth", type=existing_file, required=True, metavar="TRUTH",
                        help="ground-truth CSV in any train.csv or submission format")
    parser.add_argument("--images", type=existing_file, metavar="CSV",
                        help="the test images the submission must list, from any CSV of image "
                             "ids (e.g. sample_submission.csv). Default: the truth's images, or "
                             "for a truth listing defective images only (ImageId,ClassId,"
                             "EncodedPixels), the sample_submission.csv beside it")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON line instead of a table")


def format_score_table(result) -> str:
    """The score as a small text table: overall, then one line per class."""
    lines = [
        f"competition dice  {result.competition_dice:.5f}  "
        f"({result.n_images:,} images, {result.n_pairs:,} image-class pairs)",
        "class  dice",
    ]
    lines += [f"{class_id:>5}  {value:.5f}" for class_id, value in result.per_class.items()]
    lines.append(f"an all-empty submission would score {result.empty_pair_share:.5f}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Score the submission and print the table or the JSON line."""
    # Numpy and pandas only: scoring never imports TensorFlow.
    from steel_keras.metrics.competition import score_files

    result = score_files(args.submission, args.truth, images=args.images)
    print(json.dumps(result.to_dict()) if args.json else format_score_table(result))
    return 0
