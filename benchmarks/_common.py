"""Helpers shared by the benchmark scripts: timing, machine description, JSON + Markdown output."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    """What the numbers were measured on."""
    return {
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def median_time(fn: Callable[[], object], repeats: int = 7, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_results(name: str, payload: dict, table: str) -> tuple[Path, Path]:
    """Write ``results/NAME.json`` and ``results/NAME.md``; print the table."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine(), **payload}
    json_path = RESULTS / f"{name}.json"
    md_path = RESULTS / f"{name}.md"
    json_path.write_text(json.dumps(payload, indent=2) + "\n")
    md_path.write_text(table)
    print(table)
    print(f"wrote {json_path} and {md_path}")
    return json_path, md_path


def parse_sizes(parser: argparse.ArgumentParser, text: str) -> tuple[tuple[int, int], ...]:
    """``"128x800,256x1600"`` to ``((128, 800), (256, 1600))``; a bad one is a usage error."""
    sizes = []
    for part in text.split(","):
        try:
            height, width = (int(v) for v in part.strip().lower().split("x"))
        except ValueError:
            parser.error(f"--sizes: {part!r} is not HEIGHTxWIDTH, e.g. 128x800")
        if height < 1 or width < 1:
            parser.error(f"--sizes: {part!r} must be positive")
        sizes.append((height, width))
    return tuple(sizes)
