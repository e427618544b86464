"""``python -m steel_keras.deploy._bench_worker JOB.json``: time one runtime in its own process.

Own process, so that its peak memory is its own: the resident memory is read after the batches
are loaded (``rss_base_mb``) and the peak at the end (``peak_rss_mb``); the difference is what
the runtime's libraries, the model and inference added. The job names the ``.keras`` file, the
runtime, a ``.npy`` of batches ``(k, B, H, W, 1)``, the warm-up and timed iterations, and where
to save the outputs of the first pass (for the parity check). Input errors: ``error: <line>``,
exit code 2.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from steel_keras.deploy._memory import peak_rss_mb, rss_mb
from steel_keras.errors import SteelKerasError


def measure(job: dict) -> dict:
    """Load the runner, one pass over the batches (outputs saved), warm-up, timed iterations."""
    from steel_keras.deploy.parity import flatten
    from steel_keras.deploy.runners import load_runner

    batches = np.load(job["batches"])
    base = rss_mb()
    start = time.perf_counter()
    runner = load_runner(job["keras_path"], job["runtime"])
    load_s = time.perf_counter() - start
    outputs = Path(job["outputs"]) if job.get("outputs") else None
    for i, batch in enumerate(batches):  # the first pass warms up too
        out = runner.predict(batch)
        if outputs is not None:
            np.save(outputs / f"{i}.npy", flatten(out))
    for i in range(max(0, job["warmup"] - len(batches))):
        runner.predict(batches[i % len(batches)])
    latencies = []
    cpu_start = time.process_time()
    for i in range(job["iterations"]):
        batch = batches[i % len(batches)]
        tick = time.perf_counter()
        runner.predict(batch)
        latencies.append(time.perf_counter() - tick)
    cpu_s = time.process_time() - cpu_start  # all threads of this process
    return {"latencies_s": latencies, "cpu_s": cpu_s, "load_s": load_s, "rss_base_mb": base,
            "peak_rss_mb": peak_rss_mb()}


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[0]).read_text())
    try:
        result = measure(job)
    except SteelKerasError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    Path(job["result_path"]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
