"""``steel-keras doctor``: what this machine can run, and how to install what it lacks."""

from __future__ import annotations

import argparse
import json

NAME = "doctor"
HELP = (
    "check TensorFlow (build, devices), GPU, TensorRT, TF-TRT, ONNX Runtime, OpenVINO and "
    "the CPU's features; print the command that installs each missing piece"
)
MARKS = {"ok": "ok", "missing": "MISSING", "problem": "PROBLEM"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")


def run(args: argparse.Namespace) -> int:
    from steel_keras.deploy.doctor import as_dicts, diagnose

    checks = diagnose()
    if args.json:
        print(json.dumps(as_dicts(checks), indent=2))
        return 0
    width = max(len(check.name) for check in checks)
    for check in checks:
        print(f"{MARKS[check.status]:8} {check.name:{width}}  {check.detail}")
        if check.fix:
            print(f"{'':8} {'':{width}}  fix: {check.fix}")
    lacking = [check.name for check in checks if check.status != "ok"]
    print()
    print("missing or broken: " + ", ".join(lacking) if lacking else "everything is usable")
    return 0
