"""Training throughput and peak memory of every model family: is training input-bound?

For each model family, image size and feed, one training run of ``model.fit`` (batch 8 or
``--batch-size``, Adam, random weights; ``--width`` for ``unet_separable``) in its own
subprocess, so that its peak resident memory (``ru_maxrss`` of that
process) is its own. Two feeds:

- ``pipeline``: the real input pipeline, ``segmentation_dataset`` / ``classification_dataset``
  (``steel_keras.data.tfdata``) with shuffling and :func:`make_augmentation`'s defaults
  (flips, brightness and contrast), decoding JPEG files every step;
- ``in-memory``: the same images, unaugmented, loaded once with ``load_arrays`` and fed by
  ``tf.data.Dataset.from_tensor_slices(...).batch(8)``: the ceiling;
- ``cached`` (only for the ``--cached-for`` families, the fast ones): the real pipeline with
  ``cache=True``, as the ``quick-cpu`` recipe trains (``"cache": true``): JPEG decoding and
  resizing once, then only the augmentation each step.

``pipeline / in-memory`` (of images per second) says whether training is input-bound: the bar
is 90 % or more. The two feeds of a (family, size) run back to back, their order alternating
from one family to the next, so that load from other processes hits both alike.

A step's time is the wall time between the ends of consecutive batches (a ``fit`` callback), so
it includes waiting for data. The first ``--warmup`` steps (the first one traces the graph) are
left out; then steps are timed until there are at least ``--steps`` of them and they took at
least ``--min-seconds``, so that batches the pipeline buffered while the graph was traced cannot
hide a slow pipeline. The table gives the median step; the JSON also has the mean and the CPU
time per step (all threads of the process: it hardly depends on other load).

The dataset is ``steel_keras.synthetic.generate_dataset``'s (64 train images, generated once
into ``benchmarks/.cache``), else ``bench_pipeline.py``'s plain textured-noise one.

    python benchmarks/bench_training.py [--families small_cnn,unet_resnet18]
        [--sizes 128x800,256x1600] [--skip-slow] [--warmup 3] [--steps 5] [--min-seconds 10]

``--rounds N`` runs every feed N times, in alternating order, and takes the median of the runs'
median steps: on a machine whose host steals CPU time, one run of 40 s can be 20 % slower than
the next for no reason of its own, so a single pipeline / in-memory pair is a coin toss near the
bar. ``--skip-slow`` leaves out the families in ``SLOW`` at 256 x 1600 (on 2 CPU cores each takes
minutes there). ``--write-as NAME`` writes ``results/NAME.{json,md}`` instead of ``training``.
``--dtype-policy mixed_bfloat16`` (or ``mixed_float16``) trains under that Keras dtype policy,
as ``steel-keras train-* --mixed-precision bfloat16`` does: on a CPU with AVX512-BF16 or AMX,
compare it with the default ``float32``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, parse_sizes, write_results  # noqa: E402

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
# Every finished run is appended here, so that --reuse can assemble a table across invocations.
RUN_LOG = CACHE / "training-runs.jsonl"
BATCH = 8
N_IMAGES = 64
SIZES = ((128, 800), (256, 1600))
FEEDS = ("pipeline", "in-memory")
CACHED_FOR = ("small_cnn", "unet_separable")

# family -> (kind, builder arguments)
FAMILIES: dict[str, tuple[str, dict]] = {
    "small_cnn": ("classifier", {"backbone": "small_cnn"}),
    "mobilenetv2": ("classifier", {"backbone": "mobilenetv2"}),
    "efficientnetb0": ("classifier", {"backbone": "efficientnetb0"}),
    "xception": ("classifier", {"backbone": "xception"}),
    "unet_resnet18": ("segmenter", {"arch": "unet", "backbone": "resnet18"}),
    "fpn_resnet18": ("segmenter", {"arch": "fpn", "backbone": "resnet18"}),
    "linknet_resnet18": ("segmenter", {"arch": "linknet", "backbone": "resnet18"}),
    "unet_xception": ("segmenter", {"arch": "unet_xception"}),
    "unet_separable": ("segmenter", {"arch": "unet_separable"}),
}
# The slowest families at 256 x 1600 on 2 CPU cores, left out there by --skip-slow. Measured
# on their own (results/training-slow.md, in memory, after one warm-up step): xception 9 s/step
# and 11 GB, unet_xception 19 s and 15 GB, unet_resnet18 7 s and 7 GB, fpn_resnet18 27 s and
# 14 GB, linknet_resnet18 5 s and 7 GB; the first step (tracing) takes minutes more.
SLOW = ("xception", "unet_xception", "unet_resnet18", "fpn_resnet18", "linknet_resnet18")


def size_name(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def dataset_dir(n_images: int = N_IMAGES) -> tuple[Path, str]:
    """The cached synthetic dataset, generated on first use."""
    try:
        from steel_keras.synthetic import generate_dataset
    except ImportError:
        generate_dataset = None
    source = "steel_keras.synthetic" if generate_dataset else "plain noise (bench_pipeline's)"
    root = CACHE / f"training-{n_images}-{'synthetic' if generate_dataset else 'plain'}"
    if (root / "train.csv").exists() and (root / "train_images").is_dir():
        return root, source
    print(f"generating {n_images} images into {root}", flush=True)
    if generate_dataset:
        generate_dataset(root, n_train=n_images, n_test=0, seed=0, progress=False)
    else:
        from bench_pipeline import write_plain_dataset

        write_plain_dataset(root, n_images)
    return root, source


# ---------------------------------------------------------------- child: one training run


def child(family: str, size: tuple[int, int], feed: str, data: Path, args) -> dict:
    """Train ``family`` at ``size`` on ``feed``; return step times and peak memory."""
    import keras
    import tensorflow as tf

    from steel_keras.data import SteelDataset, make_augmentation
    from steel_keras.data.tfdata import (
        classification_dataset,
        load_arrays,
        segmentation_dataset,
    )
    from steel_keras.losses import get_loss
    from steel_keras.models import build_classifier, build_segmenter

    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy(args.dtype_policy)
    kind, spec = FAMILIES[family]
    ds = SteelDataset(data)
    ids = ds.train_image_ids
    if feed == "cached":  # time only steps served from the cache: the first epoch decodes
        args.warmup = max(args.warmup, -(-len(ids) // args.batch_size) + 1)
    if kind == "classifier":
        model = build_classifier(input_shape=(*size, 1), **spec)
        loss = "binary_crossentropy"
    else:
        if family == "unet_separable" and args.width != 1.0:
            spec = {**spec, "width": args.width}
        model = build_segmenter(input_shape=(*size, 1), classes=4, **spec)
        loss = get_loss("bce_dice")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)

    if feed in ("pipeline", "cached"):
        common = {
            "cache": feed == "cached",
            "image_size": size,
            "batch_size": args.batch_size,
            "augment": make_augmentation(),
            "shuffle": True,
            "repeat": True,
            "seed": 0,
        }
        if kind == "classifier":
            batches = classification_dataset(ds, ids, target="binary", **common)
        else:
            batches = segmentation_dataset(ds, ids, **common)
    else:
        arrays = load_arrays(
            ds, ids, size, kind="segmentation" if kind == "segmenter" else "classification"
        )
        batches = tf.data.Dataset.from_tensor_slices(arrays).batch(args.batch_size).repeat()
        del arrays

    class StepTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.ends: list[tuple[float, float]] = []
            self.timed_from: int | None = None

        def on_train_batch_end(self, batch, logs=None) -> None:
            self.ends.append((time.perf_counter(), time.process_time()))
            done = len(self.ends) - args.warmup  # timed steps so far
            if done >= args.steps:
                elapsed = self.ends[-1][0] - self.ends[args.warmup - 1][0]
                if elapsed >= args.min_seconds or done >= args.max_steps:
                    self.model.stop_training = True

    timer = StepTimer()
    load_before = os.getloadavg()
    start = time.perf_counter()
    model.fit(
        batches,
        epochs=1,
        steps_per_epoch=args.warmup + args.max_steps,
        callbacks=[timer],
        verbose=0,
    )
    fit_s = time.perf_counter() - start
    ends = timer.ends[args.warmup - 1 :]
    wall = [b[0] - a[0] for a, b in zip(ends, ends[1:], strict=False)]
    cpu = [b[1] - a[1] for a, b in zip(ends, ends[1:], strict=False)]
    return {
        "family": family,
        "kind": kind,
        "size": size_name(size),
        "feed": feed,
        "dtype_policy": args.dtype_policy,
        "params": model.count_params(),
        "warmup_steps": args.warmup,
        "timed_steps": len(wall),
        "first_step_s": timer.ends[0][0] - start,
        "fit_s": fit_s,
        "step_s_median": statistics.median(wall),
        "step_s_mean": statistics.fmean(wall),
        "step_s_all": [round(t, 4) for t in wall],
        "cpu_s_per_step_median": statistics.median(cpu),
        # Linux: kilobytes.
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }


# ---------------------------------------------------------------- parent: run every child


def run_child(family: str, size: tuple[int, int], feed: str, data: Path, args) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        family,
        size_name(size),
        feed,
        "--data",
        str(data),
        "--warmup",
        str(args.warmup),
        "--steps",
        str(args.steps),
        "--min-seconds",
        str(args.min_seconds),
        "--max-steps",
        str(args.max_steps),
        "--timeout",
        str(args.timeout),
        "--dtype-policy",
        args.dtype_policy,
        "--batch-size",
        str(args.batch_size),
        "--width",
        str(args.width),
    ]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired as e:
        stderr = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr
        return {
            "family": family,
            "size": size_name(size),
            "feed": feed,
            "error": f"timed out after {args.timeout} s",
            "stderr_tail": _tail(stderr),
        }
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        hung = "Timeout (" in (proc.stderr or "")
        why = "hung (thread stacks in stderr_tail)" if hung else f"exit {proc.returncode}"
        tail = _tail(proc.stderr)
        return {
            "family": family,
            "size": size_name(size),
            "feed": feed,
            "error": f"{why}: {tail.splitlines()[-1] if tail else '(no output)'}",
            "stderr_tail": tail,
        }
    result = json.loads(lines[-1][len("RESULT ") :])
    result["process_s"] = time.perf_counter() - start
    return result


def _settings(args, data: Path) -> dict:
    """What must match for a logged run to be reused."""
    return {
        "data": str(Path(data).resolve()),
        "warmup": args.warmup,
        "steps": args.steps,
        "min_seconds": args.min_seconds,
        "max_steps": args.max_steps,
        "dtype_policy": args.dtype_policy,
        # Only where they differ from the defaults, so that runs logged before they existed match.
        **({"batch_size": args.batch_size} if args.batch_size != BATCH else {}),
        **({"width": args.width} if args.width != 1.0 else {}),
    }


def _logged_runs(settings: dict) -> dict[tuple[str, str, str], dict]:
    """The latest successful logged run of each (family, size, feed) with these settings."""
    runs: dict[tuple[str, str, str], dict] = {}
    if RUN_LOG.exists():
        for line in RUN_LOG.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.pop("settings", None) == settings:
                runs[record["family"], record["size"], record["feed"]] = record
    return runs


def _images_per_s(run: dict, batch_size: int) -> str:
    return f"{batch_size / run['step_s_median']:.1f}" if "error" not in run else "failed"


def _tail(text: str | None, lines: int = 60) -> str:
    kept = [line for line in (text or "").splitlines() if not line.startswith(("I0000", "W0000"))]
    return "\n".join(kept[-lines:])


def _print_run(family: str, size: tuple[int, int], feed: str, r: dict) -> None:
    if "error" in r:
        print(f"  {family:17} {size_name(size):8} {feed:9}: {r['error']}", flush=True)
        return
    print(
        f"  {family:17} {size_name(size):8} {feed:9}: "
        f"{r['step_s_median']:.3f} s/step (mean {r['step_s_mean']:.3f}, "
        f"{r['timed_steps']} steps), {r['cpu_s_per_step_median']:.3f} CPU s/step, "
        f"peak {r['peak_rss_mb']:.0f} MB, load {r['loadavg_before'][0]:.2f}"
        f"->{r['loadavg_after'][0]:.2f}, "
        + ("reused" if r.get("reused") else f"{r['process_s']:.0f} s"),
        flush=True,
    )


def _combine_rounds(results: list[dict]) -> dict[tuple[str, str, str], dict]:
    """One record per (family, size, feed): the median over rounds of each run's median step.

    A failed round makes the whole record failed. ``step_s_rounds`` keeps each round's median.
    """
    runs: dict[tuple[str, str, str], list[dict]] = {}
    for r in results:
        runs.setdefault((r["family"], r["size"], r["feed"]), []).append(r)
    combined = {}
    for key, group in runs.items():
        failed = [r for r in group if "error" in r]
        if failed:
            combined[key] = failed[0]
            continue
        combined[key] = {
            **group[0],
            "step_s_median": statistics.median(r["step_s_median"] for r in group),
            "cpu_s_per_step_median": statistics.median(r["cpu_s_per_step_median"] for r in group),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in group),
            "step_s_rounds": [r["step_s_median"] for r in group],
        }
    return combined


def _round_ratios(pipe: dict, mem: dict, cached: dict | None) -> dict[str, list[float]]:
    """Per round: in-memory step / pipeline (and cached) step, where there are several rounds."""
    mem_steps = mem.get("step_s_rounds", [])
    if len(mem_steps) < 2:
        return {}
    out = {}
    for name, other in (("ratio_rounds", pipe), ("cached_ratio_rounds", cached)):
        steps = (other or {}).get("step_s_rounds", [])
        if len(steps) == len(mem_steps):
            out[name] = [m / p for m, p in zip(mem_steps, steps, strict=True)]
    return out


def _ratio_cell(ratio: float | None, rounds: list[float] | None) -> str:
    if ratio is None:
        return "-"
    if not rounds:
        return f"{100 * ratio:.0f} %"
    return f"{100 * ratio:.0f} % ({100 * min(rounds):.0f}-{100 * max(rounds):.0f})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--families",
        default=",".join(FAMILIES),
        help=f"comma-separated, from: {', '.join(FAMILIES)}",
    )
    parser.add_argument(
        "--sizes",
        default=",".join(size_name(s) for s in SIZES),
        help="comma-separated HxW, e.g. 128x800,256x1600",
    )
    parser.add_argument(
        "--skip-slow", action="store_true", help="leave out the --slow families at 256x1600"
    )
    parser.add_argument(
        "--slow", default=",".join(SLOW), help=f"what --skip-slow leaves out (default {SLOW})"
    )
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps (>= 1)")
    parser.add_argument("--steps", type=int, default=5, help="at least this many timed steps")
    parser.add_argument(
        "--min-seconds", type=float, default=10.0, help="and time steps for at least this long"
    )
    parser.add_argument("--max-steps", type=int, default=300, help="at most this many")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per run")
    parser.add_argument("--data", type=Path, help="a Kaggle-layout folder instead of the cache")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help=f"take runs already logged in {RUN_LOG.relative_to(HERE.parent)} with the same "
        "settings instead of running them again",
    )
    parser.add_argument(
        "--cached-for",
        default=",".join(CACHED_FOR),
        help="families that also train on the cached pipeline (feed `cached`)",
    )
    parser.add_argument("--write-as", default="training", help="results/NAME.{json,md}")
    parser.add_argument(
        "--dtype-policy",
        default="float32",
        choices=("float32", "mixed_bfloat16", "mixed_float16"),
        help="the Keras dtype policy to train under (default float32)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=BATCH, help=f"images per step (default {BATCH})"
    )
    parser.add_argument(
        "--width",
        type=float,
        default=1.0,
        help="unet_separable's width multiplier (default 1.0; quick-cpu trains 0.5)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every feed this many times, in alternating order, and take the median of "
        "the runs' median steps: on a shared machine load drifts between runs",
    )
    parser.add_argument(
        "--child", nargs=3, metavar=("FAMILY", "SIZE", "FEED"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    args.warmup = max(1, args.warmup)
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.rounds > 1 and args.reuse:
        parser.error("--reuse takes one logged run per feed; it does not combine with --rounds")
    if not 0 < args.width <= 4:
        parser.error(f"--width must be in (0, 4], got {args.width:g}")

    if args.child:
        import faulthandler

        # A hung run leaves its threads' stacks in stderr, which the parent reports.
        faulthandler.dump_traceback_later(max(1, args.timeout - 15), exit=True)
        family, size, feed = args.child
        result = child(family, parse_sizes(parser, size)[0], feed, args.data, args)
        print("RESULT " + json.dumps(result), flush=True)
        try:
            record = {**result, "settings": _settings(args, args.data)}
            record["measured_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            with RUN_LOG.open("a") as log:
                log.write(json.dumps(record) + "\n")
        except OSError as error:
            print(f"could not append to {RUN_LOG}: {error}", file=sys.stderr)
        sys.stderr.flush()
        # Skip interpreter teardown: joining TensorFlow's threads can hang at exit, and
        # nothing is left to clean up.
        os._exit(0)

    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        parser.error(f"unknown families {unknown}; choose from {', '.join(FAMILIES)}")
    sizes = list(parse_sizes(parser, args.sizes))
    if args.data:
        data, source = args.data, str(args.data)
    else:
        data, source = dataset_dir()

    logged = _logged_runs(_settings(args, data)) if args.reuse else {}
    load_start = os.getloadavg()
    wall_start = time.perf_counter()
    results, skipped = [], []
    turn = 0
    for size in sizes:
        for family in families:
            if args.skip_slow and family in args.slow.split(",") and size == (256, 1600):
                skipped.append(f"{family} {size_name(size)}")
                continue
            feeds = FEEDS
            if family in args.cached_for.split(","):
                feeds = (*feeds, "cached")
            for round_ in range(args.rounds):
                # Alternate the order from one family (and round) to the next.
                order = feeds if turn % 2 == 0 else feeds[::-1]
                turn += 1
                for feed in order:
                    r = logged.get((family, size_name(size), feed))
                    if r is not None:
                        r = {**r, "reused": True}
                    else:
                        r = run_child(family, size, feed, data, args)
                    r["round"] = round_
                    results.append(r)
                    _print_run(family, size, feed, r)
    load_end = os.getloadavg()
    n_reused = sum(1 for r in results if r.get("reused"))
    total_s = time.perf_counter() - wall_start

    rows, pairs = [], []
    by_key = _combine_rounds(results)
    for size in sizes:
        for family in families:
            pipe = by_key.get((family, size_name(size), "pipeline"))
            mem = by_key.get((family, size_name(size), "in-memory"))
            cached = by_key.get((family, size_name(size), "cached"))
            if pipe is None or mem is None:
                continue
            ok = "error" not in pipe and "error" not in mem
            ratio = mem["step_s_median"] / pipe["step_s_median"] if ok else None
            cached_ratio = (
                mem["step_s_median"] / cached["step_s_median"]
                if ok and cached is not None and "error" not in cached
                else None
            )
            cpu_ratio = mem["cpu_s_per_step_median"] / pipe["cpu_s_per_step_median"] if ok else None
            cached_cpu_ratio = (
                mem["cpu_s_per_step_median"] / cached["cpu_s_per_step_median"]
                if cached_ratio is not None
                else None
            )
            pairs.append(
                {
                    "family": family,
                    "size": size_name(size),
                    "ratio": ratio,
                    "cpu_ratio": cpu_ratio,
                    "cached_ratio": cached_ratio,
                    "cached_cpu_ratio": cached_cpu_ratio,
                    **_round_ratios(pipe, mem, cached),
                }
            )

            def cell(r: dict, fmt: str, key: str) -> str:
                return fmt.format(r[key]) if "error" not in r else "failed"

            rows.append(
                (
                    family,
                    size_name(size),
                    cell(pipe, "{:.3f}", "step_s_median"),
                    cell(mem, "{:.3f}", "step_s_median"),
                    _images_per_s(pipe, args.batch_size),
                    _images_per_s(mem, args.batch_size),
                    _ratio_cell(ratio, pairs[-1].get("ratio_rounds")),
                    cell(cached, "{:.3f}", "step_s_median") if cached else "-",
                    _ratio_cell(cached_ratio, pairs[-1].get("cached_ratio_rounds")),
                    f"{100 * cpu_ratio:.0f} %" if cpu_ratio is not None else "-",
                    f"{100 * cached_cpu_ratio:.0f} %" if cached_cpu_ratio is not None else "-",
                    cell(pipe, "{:.0f}", "peak_rss_mb"),
                    cell(mem, "{:.0f}", "peak_rss_mb"),
                    cell(pipe, "{:.2f}", "cpu_s_per_step_median"),
                    cell(mem, "{:.2f}", "cpu_s_per_step_median"),
                    f"{pipe.get('loadavg_before', [float('nan')])[0]:.1f}"
                    f"/{mem.get('loadavg_before', [float('nan')])[0]:.1f}",
                )
            )
    errors = [
        f"{r['family']} {r['size']} {r['feed']}: {r['error']}" for r in results if "error" in r
    ]
    table = (
        f"Training throughput, batch {args.batch_size}, Adam, random weights, dtype policy "
        f"{args.dtype_policy}"
        + (f", unet_separable at width {args.width:g}" if args.width != 1.0 else "")
        + f"; {N_IMAGES} images "
        f"({source}); pipeline = tf.data with shuffle + flips + brightness/contrast, "
        f"in-memory = load_arrays -> from_tensor_slices().batch({args.batch_size}); "
        "median step after "
        f"{args.warmup} warm-up steps, at least {args.steps} timed steps and "
        f"{args.min_seconds:g} s; each run in its own process"
        + (
            f"; {args.rounds} rounds of every feed in alternating order, each step time the "
            "median of the rounds' medians, the range of the rounds' ratios in brackets."
            if args.rounds > 1
            else "."
        )
        + " Load average (1 min) "
        f"before/after the whole run: {load_start[0]:.2f}/{load_end[0]:.2f} on "
        f"{os.cpu_count()} cores; {total_s / 60:.1f} min in all."
        + (
            f" {n_reused} of {len(results)} runs were reused from earlier invocations "
            "(--reuse; `measured_utc` in the JSON).\n\n"
            if n_reused
            else "\n\n"
        )
        + "`ratio` = images/s with the pipeline / images/s in memory (bar: >= 90 %); "
        "`ratio cached` the same for the pipeline with `cache=True` (decoding once; only the "
        "augmentation each step), measured for the fast families only. "
        "`CPU s/step` counts all threads of the process; `CPU ratio` = CPU s/step in memory / "
        "with the pipeline, what the ratio would be if the step were CPU-bound on all cores "
        "(less dependent on other load than the wall clock); `CPU ratio cached` the same "
        "with `cache=True`. `load` = 1-minute load average when "
        "the pipeline / in-memory run started.\n\n"
        + markdown_table(
            [
                "family",
                "size",
                "s/step pipeline",
                "s/step in-memory",
                "images/s pipeline",
                "images/s in-memory",
                "ratio",
                "s/step cached",
                "ratio cached",
                "CPU ratio",
                "CPU ratio cached",
                "peak RSS MB pipeline",
                "peak RSS MB in-memory",
                "CPU s/step pipeline",
                "CPU s/step in-memory",
                "load",
            ],
            rows,
        )
        + ("\nSkipped (--skip-slow): " + ", ".join(skipped) + "\n" if skipped else "")
        + ("\nFailed: " + "; ".join(errors) + "\n" if errors else "")
    )
    write_results(
        args.write_as,
        {
            "batch_size": args.batch_size,
            "unet_separable_width": args.width,
            "dtype_policy": args.dtype_policy,
            "images": N_IMAGES,
            "source": source,
            "warmup_steps": args.warmup,
            "min_timed_steps": args.steps,
            "min_timed_seconds": args.min_seconds,
            "loadavg_before": load_start,
            "loadavg_after": load_end,
            "total_s": total_s,
            "skipped": skipped,
            "ratios": pairs,
            "results": results,
        },
        table,
    )


if __name__ == "__main__":
    main()
