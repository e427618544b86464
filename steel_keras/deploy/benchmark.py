"""Time the same real batches through every available runtime; compare each with Keras.

Each runtime runs in its own subprocess (:mod:`steel_keras.deploy._bench_worker`), so that its
peak memory is its own and one runtime's caches cannot help or hurt the next. In each: load the
runner, one pass over the distinct batches (saved for the parity check; it also warms up),
more warm-up where asked, then ``iterations`` timed batches. With ``rounds`` > 1 the runtimes
take turns round by round, so that load from other processes hits them alike; the latencies of
all rounds are pooled.

Reported per model and runtime: throughput (images per second over the timed batches), p50 and
p95 latency per batch, peak resident memory of the subprocess and its growth after the batches
were loaded, the speed-up over ``keras`` (``model.predict``), and parity with ``keras``: max
absolute difference and Dice agreement of the outputs thresholded at 0.5. Runtimes that cannot
run here, or whose export is missing, are listed as skipped with the reason.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from steel_keras.deploy.bf16 import cpu_info
from steel_keras.deploy.export import _worker_env
from steel_keras.deploy.inputs import run_images
from steel_keras.deploy.parity import Parity
from steel_keras.deploy.registry import RUNTIMES, get_runtime
from steel_keras.deploy.runners import cpu_cores
from steel_keras.errors import ConfigError
from steel_keras.rundir import RunModel, run_models

REFERENCE = "keras"


#: The CPU features that decide which runtime is fastest on a CPU: wide vectors, INT8 dot
#: products (``onnx_int8``) and native bfloat16 (``tf_bf16``).
CPU_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16")


def cpu_description(cpuinfo: str | Path = "/proc/cpuinfo") -> dict[str, Any]:
    """The CPU's model name and which of :data:`CPU_FEATURES` it has.

    Both None where ``cpuinfo`` cannot be read (not Linux).
    """
    fields = cpu_info(cpuinfo)
    if fields is None:
        return {"cpu_model": None, "cpu_features": None}
    flags = set(fields.get("flags", "").split())
    return {"cpu_model": fields.get("model name"),
            "cpu_features": [name for name in CPU_FEATURES if name in flags]}


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {"cpu_cores": cpu_cores(), **cpu_description(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "platform": platform.platform()}


def _cpu_words(info: dict[str, Any]) -> str:
    """``2 CPU cores (AMD EPYC; avx2)`` for a report's first line."""
    words = f"{info['cpu_cores']} CPU cores"
    if info.get("cpu_features") is None:
        return words
    features = ", ".join(info["cpu_features"]) or "no AVX2"
    return f"{words} ({info.get('cpu_model') or 'unknown CPU'}; {features})"


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("tensorflow", "tensorflow-cpu", "keras", "onnxruntime", "tf2onnx", "tensorrt"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def _parse_runtimes(runtimes: Sequence[str] | None) -> list[str]:
    chosen = list(dict.fromkeys(runtimes or RUNTIMES))
    for name in chosen:
        get_runtime(name)
    return [REFERENCE] + [r for r in chosen if r != REFERENCE]


def _skip_reason(model: RunModel, runtime: str, status: dict[str, str | None]) -> str | None:
    if status[runtime]:
        return status[runtime]
    entry = RUNTIMES[runtime]
    if entry.exported and not entry.export_path(model).exists():
        return f"no {runtime} export: run `{entry.export_command(model.run_dir)}` first"
    return None


def _measure(model: RunModel, runtime: str, job: dict[str, Any], tmp: Path,
             save_outputs: bool) -> dict[str, Any]:
    """One subprocess run of one runtime; `{"error": line}` where it could not run."""
    outputs = tmp / f"out_{model.stage}_{model.stem}_{runtime}"
    outputs.mkdir(exist_ok=True)
    result_path = tmp / "result.json"
    result_path.unlink(missing_ok=True)
    job = {**job, "keras_path": str(model.keras_path), "runtime": runtime,
           "outputs": str(outputs) if save_outputs else None, "result_path": str(result_path)}
    job_path = tmp / "job.json"
    job_path.write_text(json.dumps(job))
    proc = subprocess.run([sys.executable, "-m", "steel_keras.deploy._bench_worker",
                           str(job_path)], capture_output=True, text=True,
                          env=_worker_env(), check=False)
    if proc.returncode == 0 and result_path.is_file():
        return json.loads(result_path.read_text()) | {"outputs": str(outputs)}
    lines = (proc.stderr or proc.stdout).strip().splitlines() or ["no output"]
    errors = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
    how = "" if proc.returncode == 2 else f"exit code {proc.returncode}: "
    return {"error": how + (errors[-1] if errors else lines[-1])[:300]}


def latency_percentiles(seconds: np.ndarray, percentiles: Sequence[float] = (50, 95)) -> dict:
    """``{p: the p-th percentile of the call times, in milliseconds}`` (numpy's interpolation).

    A mean hides the slow calls a user waits for; the median and the 95th percentile show them.

    Raises:
        ValueError: ``seconds`` is empty.

    Example:
        >>> latency_percentiles(np.array([0.010, 0.012, 0.011, 0.050]), (50,))
        {50: 11.5}
    """
    seconds = np.asarray(seconds, dtype=np.float64)
    if seconds.size == 0:
        raise ValueError("latency_percentiles needs at least one timed call")
    return {p: float(1000.0 * np.percentile(seconds, p)) for p in percentiles}


def throughput(batch_size: int, seconds: np.ndarray) -> float:
    """Images per second over calls of one batch each: all the images over all the time.

    Not the mean of per-call rates: one slow call weighs as much as the time it took.

    Raises:
        ValueError: ``seconds`` is empty or sums to zero or less, or ``batch_size`` < 1.

    Example:
        >>> throughput(8, np.array([0.1, 0.3]))
        40.0
    """
    seconds = np.asarray(seconds, dtype=np.float64)
    if batch_size < 1 or seconds.size == 0 or seconds.sum() <= 0:
        raise ValueError("throughput needs batch_size >= 1 and timed calls with positive time")
    return float(batch_size * seconds.size / seconds.sum())


def _parity(reference: Path, other: Path, batches: int) -> dict[str, Any]:
    parity = Parity()
    for i in range(batches):
        parity.update(np.load(reference / f"{i}.npy"), np.load(other / f"{i}.npy"))
    result = parity.result()
    return {k: result[k] for k in ("max_abs_diff", "mean_abs_diff", "dice_agreement")}


def _row(model: RunModel, runtime: str, runs: list[dict[str, Any]], batch: int) -> dict[str, Any]:
    row: dict[str, Any] = {"model": model.name, "runtime": runtime}
    errors = [r["error"] for r in runs if "error" in r]
    if errors:
        return row | {"status": "failed", "reason": errors[0]}
    latencies = np.array([t for r in runs for t in r["latencies_s"]])
    p50, p95 = latency_percentiles(latencies, (50, 95)).values()
    return row | {
        "status": "ok", "timed_batches": int(latencies.size),
        "throughput_ips": throughput(batch, latencies),
        "latency_p50_ms": p50,
        "latency_p95_ms": p95,
        "latency_mean_ms": float(latencies.mean() * 1e3),
        "cpu_ms_per_image": float(sum(r["cpu_s"] for r in runs) / (batch * latencies.size) * 1e3),
        "load_s": float(np.mean([r["load_s"] for r in runs])),
        "peak_rss_mb": float(max(r["peak_rss_mb"] for r in runs)),
        "rss_delta_mb": float(max(r["peak_rss_mb"] - r["rss_base_mb"] for r in runs)),
    }


def _benchmark_model(model: RunModel, runtimes: list[str], status: dict[str, str | None],
                     job: dict[str, Any], distinct: int, data: Any, rounds: int,
                     tmp: Path, log: Callable[[str], None]) -> list[dict[str, Any]]:
    batch = job["batch"]
    images = run_images(model.run_dir, model.image_size, batch * distinct, data)
    job = {**job, "batches": str(tmp / "batches.npy")}
    np.save(job["batches"], images.reshape(distinct, batch, *images.shape[1:]))
    del images
    skipped = {r: _skip_reason(model, r, status) for r in runtimes}
    runnable = [r for r in runtimes if not skipped[r]]
    runs: dict[str, list[dict[str, Any]]] = {r: [] for r in runnable}
    for round_index in range(rounds):
        for runtime in runnable:
            log(f"{model.name}: {runtime} (round {round_index + 1} of {rounds})")
            runs[runtime].append(_measure(model, runtime, job, tmp, round_index == 0))
    rows = []
    for runtime in runtimes:
        if skipped[runtime]:
            rows.append({"model": model.name, "runtime": runtime, "status": "skipped",
                         "reason": skipped[runtime]})
            continue
        rows.append(_row(model, runtime, runs[runtime], batch))
        ref, mine = runs.get(REFERENCE, [{}])[0], runs[runtime][0]
        if rows[-1]["status"] == "ok" and "outputs" in ref:
            rows[-1].update(_parity(Path(ref["outputs"]), Path(mine["outputs"]), distinct))
    _add_speedups(rows)
    return rows


def _add_speedups(rows: list[dict[str, Any]]) -> None:
    reference = next((r for r in rows if r["runtime"] == REFERENCE and r["status"] == "ok"), None)
    for row in rows:
        if reference and row["status"] == "ok":
            row["speedup_vs_keras"] = row["throughput_ips"] / reference["throughput_ips"]


def benchmark_run(run_dir: str | Path, runtimes: Sequence[str] | None = None, *,
                  batch: int = 8, iterations: int = 10, warmup: int = 2,
                  distinct_batches: int = 2, stage: str = "segmenter",
                  data: str | Path | None = None, rounds: int = 1,
                  log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Benchmark the runtimes on a run's models (the segmenters by default).

    Args:
        run_dir: a trained run directory (exports from `steel-keras export`).
        runtimes: names from `RUNTIMES`; all by default. `keras` is always run: it is the
            reference for the speed-up and the parity.
        batch: images per batch.
        iterations: timed batches per runtime and round.
        warmup: untimed batches first (at least one pass over the distinct batches).
        distinct_batches: how many different real batches to cycle through.
        stage: `"segmenter"` or `"classifier"`.
        data: the dataset folder. Defaults to the run's.
        rounds: times each runtime is run, taking turns.
        log: called with a line as each measurement starts.

    Returns:
        `{"results": [row per model and runtime], "runtimes": {name: reason or None}, ...}`;
        :func:`markdown_report` makes a table of it.
    """
    if stage not in ("segmenter", "classifier"):
        raise ConfigError(f"stage must be segmenter or classifier, got {stage!r}")
    if min(batch, iterations, distinct_batches, rounds) < 1 or warmup < 0:
        raise ConfigError("batch, iterations, distinct batches and rounds must be 1 or more")
    chosen = _parse_runtimes(runtimes)
    models = run_models(run_dir, (stage,))
    if not models:
        raise ConfigError(f"{run_dir} has no {stage} to benchmark")
    status = {r: RUNTIMES[r].unavailable() for r in chosen}
    job = {"batch": batch, "iterations": iterations, "warmup": warmup}
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    rows = []
    with tempfile.TemporaryDirectory(prefix="steel-keras-bench-") as tmp:
        for model in models:
            rows += _benchmark_model(model, chosen, status, job, distinct_batches, data,
                                     rounds, Path(tmp), log or (lambda _line: None))
    return {"run": str(Path(run_dir).resolve()), "stage": stage, "batch": batch,
            "iterations": iterations, "warmup": warmup, "distinct_batches": distinct_batches,
            "rounds": rounds, "image_size": list(models[0].image_size), "machine": machine(),
            "versions": _versions(), "threads": os.environ.get("OMP_NUM_THREADS"),
            "load_average": _load_average(load_before), "runtimes": status, "results": rows}


def _load_average(before: float | None) -> list[float] | None:
    """1-minute load average before and after: other work on the machine slows every row."""
    return None if before is None else [before, os.getloadavg()[0]]


def _fmt(value: Any, spec: str, suffix: str = "") -> str:
    return "" if value is None else format(value, spec) + suffix


HEADER = ("model", "runtime", "images/s", "vs keras", "p50 ms", "p95 ms", "CPU ms/image",
          "peak RSS MB", "RSS growth MB", "max abs diff", "Dice agreement")


def _cells(row: dict[str, Any]) -> list[str]:
    return [row["model"], row["runtime"], _fmt(row["throughput_ips"], ".2f"),
            _fmt(row.get("speedup_vs_keras"), ".2f", "x"), _fmt(row["latency_p50_ms"], ".0f"),
            _fmt(row["latency_p95_ms"], ".0f"), _fmt(row.get("cpu_ms_per_image"), ".0f"),
            _fmt(row["peak_rss_mb"], ".0f"), _fmt(row["rss_delta_mb"], ".0f"),
            _fmt(row.get("max_abs_diff"), ".1e"), _fmt(row.get("dice_agreement"), ".5f")]


def markdown_report(result: dict[str, Any]) -> str:
    """A Markdown table of :func:`benchmark_run`'s result, then the runtimes not measured."""
    size = "x".join(str(v) for v in result["image_size"])
    load = result.get("load_average")
    lines = [f"Batch {result['batch']} at {size}, {_cpu_words(result['machine'])}, "
             f"{result['iterations']} timed batches x {result['rounds']} round(s) per runtime"
             + (f"; load average {load[0]:.1f} before, {load[1]:.1f} after." if load else "."),
             "", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    notes = []
    for row in result["results"]:
        if row["status"] == "ok":
            lines.append("| " + " | ".join(_cells(row)) + " |")
        else:
            notes.append(f"- {row['model']} / {row['runtime']}: {row['status']}: {row['reason']}")
    if notes:
        lines += ["", "Not measured:", *notes]
    return "\n".join(lines) + "\n"
