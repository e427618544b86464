"""The ``steel-keras`` command: a thin layer over the library, one module per verb.

Each module named in ``COMMANDS`` defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``, and imports the library inside ``run`` so that ``--help`` stays fast.
Input errors (:class:`steel_keras.errors.SteelKerasError`) and bad arguments print one line and
exit with code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from steel_keras import __version__
from steel_keras.errors import SteelKerasError

# Module names under steel_keras.cli, in the order `--help` lists them.
# Add a verb by writing its module and appending its name here (one line, no other edits).
COMMANDS = [
    "score",
    "eda",
    "grade",
    "course",
    "train_classifier",
    "train_segmenter",
    "tune",
    "evaluate",
    "predict",
    "baseline",
    "export",
    "benchmark",
    "make_dataset",
    "download",
    "doctor",
]

EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block) and exit code 2."""

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="steel-keras",
        description="Steel surface defect detection on the Severstal data, with Keras 3.",
    )
    parser.add_argument("--version", action="version", version=f"steel-keras {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=OneLineParser)
    sub.required = True
    for module_name in COMMANDS:
        module = importlib.import_module(f"steel_keras.cli.{module_name}")
        verb = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(verb)
        verb.set_defaults(_handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._handler(args) or 0)
    except SteelKerasError as exc:
        print(f"steel-keras {args.verb}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"steel-keras {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
