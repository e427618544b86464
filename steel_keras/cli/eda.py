"""``steel-keras eda``: the numbers and plots of a dataset, written to a folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from steel_keras.cli._args import positive_int

NAME = "eda"
HELP = "explore a dataset: class balance, areas, examples; writes eda.json and PNG figures"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare --data, --out, --examples and --seed."""
    parser.add_argument("--data", type=Path, default=None, metavar="DIR",
                        help="Kaggle-layout folder, real or synthetic (default: the embedded "
                             "synthetic dataset, generated on first use)")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="where to write eda.json and the figures (default: runs/eda)")
    parser.add_argument("--examples", type=positive_int, default=3, metavar="N",
                        help="images per class in the example figures (default: 3)")
    parser.add_argument("--seed", type=int, default=0, help="which examples to show")


def run(args: argparse.Namespace) -> int:
    """Run the EDA, then print the summary table and the files written."""
    from steel_keras.paths import check_output, default_data_dir, default_runs_dir

    out = args.out if args.out is not None else default_runs_dir() / "eda"
    # Before the data is read, or generated on first use.
    check_output(out, kind="dir", inputs=[args.data or default_data_dir()])
    from steel_keras.eda import format_eda_summary, run_eda
    from steel_keras.synthetic import resolve_data_dir

    data_dir = resolve_data_dir(args.data)
    stats = run_eda(data_dir, out, examples_per_class=args.examples, seed=args.seed)
    print(format_eda_summary(stats))
    print(f"wrote {out / 'eda.json'}")
    for name in stats["figures"].values():
        print(f"wrote {out / name}")
    for class_id, reason in stats["figures_skipped"].items():
        print(f"no example figure for class {class_id}: {reason}")
    return 0
