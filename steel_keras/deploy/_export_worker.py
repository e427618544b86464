"""``python -m steel_keras.deploy._export_worker JOB.json``: one conversion, in its own process.

The job file holds ``{"runtime": NAME, "result_path": ..., "kwargs": {...}}``: the registry's
``convert`` function of that runtime is called with ``kwargs``. The result (the conversion's
metadata, its wall time and this process's peak resident memory) is written to
``result_path``. An input error prints ``error: <one line>``
and exits with code 2; anything else is a bug and prints its traceback (exit code 1).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from steel_keras.deploy._memory import peak_rss_mb
from steel_keras.errors import SteelKerasError


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[0]).read_text())
    start = time.perf_counter()
    try:
        from steel_keras.deploy.registry import get_runtime, resolve

        info = resolve(get_runtime(job["runtime"]).convert)(**job["kwargs"])
    except SteelKerasError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    info = {**info, "seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb()}
    Path(job["result_path"]).write_text(json.dumps(info))
    print(json.dumps(info), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
