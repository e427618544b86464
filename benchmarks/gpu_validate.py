"""One command that validates the GPU paths on an NVIDIA machine and prints one table.

On a machine with an NVIDIA GPU (and the GPU environment: ``requirements-gpu.txt`` for TensorRT
and ONNX Runtime's CUDA provider, ``requirements-tftrt.txt`` for TF-TRT; see
docs/deployment.md):

1. a run directory: ``--run DIR``, or a demo run (an untrained sm Unet / ResNet18 whose
   batch-norm statistics come from real synthetic images, ``steel_keras.deploy.demo``) at
   ``--size`` (256 x 1600 by default);
2. ``steel-keras export`` to ONNX, then to TensorRT FP32, FP16 and INT8 and to TF-TRT FP32 and
   FP16, each checked against Keras on real images (``parity.json``);
3. ``steel-keras benchmark`` of keras, tf_function, onnx (ONNX Runtime; its runner takes the
   TensorRT, then the CUDA execution provider where installed) and each TensorRT / TF-TRT
   export, on the same real batches;
4. one table (speed, parity at export and in the benchmark, a verdict per row against the
   bars: FP32 max difference 1e-3 and Dice agreement 0.999, FP16 2e-2 and 0.99; INT8 reported)
   and ``results/gpu-validation.{json,md}`` with the output of ``steel-keras doctor``.

Every step runs the ``steel-keras`` command in a subprocess, so that this process never loads
TensorFlow, and ``TF_FORCE_GPU_ALLOW_GROWTH=true`` keeps each TensorFlow process from taking the
whole GPU. A step that cannot run here (no TensorRT, TensorFlow without TensorRT) becomes a
skipped row with its one-line reason. Exit code 0 when every row that ran is within its bars,
1 otherwise, 2 without an NVIDIA GPU (one line, nothing else done).

``--cpu-rehearsal`` runs the same steps on a machine without a GPU (the TensorRT and TF-TRT rows
then come out skipped, with their reasons): that is how the test suite checks this script
(``tests/test_gpu_validate.py``, a tiny separable U-Net).

This script has not run on a GPU yet: none was available to the project when it was written.

    python benchmarks/gpu_validate.py [--run DIR] [--batch 8] [--iterations 20] [--size 256 1600]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

from steel_keras.deploy.doctor import as_dicts, diagnose, nvidia_gpus  # noqa: E402

#: (runtime row, export format, precision); onnx and the TensorFlow runtimes need no precision.
EXPORTS = [
    ("tensorrt_fp32", "tensorrt", "fp32"),
    ("tensorrt_fp16", "tensorrt", "fp16"),
    ("tensorrt_int8", "tensorrt", "int8"),
    ("tftrt_fp32", "tftrt", "fp32"),
    ("tftrt_fp16", "tftrt", "fp16"),
]
BARS = {"fp32": (1e-3, 0.999), "fp16": (2e-2, 0.99)}
BASE_RUNTIMES = "keras,tf_function,onnx"


def steel_keras(*args: str) -> subprocess.CompletedProcess:
    """`steel-keras ARGS` in a subprocess; its output is shown as it runs."""
    env = {**os.environ, "TF_FORCE_GPU_ALLOW_GROWTH": "true"}
    print("$ steel-keras " + " ".join(args), flush=True)
    result = subprocess.run(
        [sys.executable, "-m", "steel_keras", *args],
        env=env,
        capture_output=True,
        text=True,
    )
    print(result.stdout, end="", flush=True)
    return result


def one_line(result: subprocess.CompletedProcess) -> str:
    """The step's error line (the CLI's one line, else the last line it printed)."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("steel-keras ")]
    lines = lines or result.stderr.strip().splitlines() or [f"exit code {result.returncode}"]
    return re.sub(r"^steel-keras \w+: error: ", "", lines[-1])[:500]


def demo_run(work: Path, size: tuple[int, int], arch: str) -> Path:
    """A demo run at `size` in `work` (made in a subprocess; reused where it exists)."""
    run = work / "run"
    if (run / "segmenter" / "model.keras").is_file():
        return run
    code = (
        "import sys; from pathlib import Path\n"
        "from steel_keras.synthetic import generate_dataset\n"
        "from steel_keras.deploy.demo import make_demo_run\n"
        "work, h, w, arch = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]\n"
        "generate_dataset(work / 'data', n_train=40, n_test=0, seed=0, progress=False)\n"
        "backbone = 'resnet18' if arch == 'unet' else None\n"
        "make_demo_run(work / 'run', work / 'data', arch=arch, backbone=backbone,\n"
        "              seg_size=(h, w), classifier=None, calibration_images=4)\n"
    )
    env = {**os.environ, "TF_FORCE_GPU_ALLOW_GROWTH": "true"}
    subprocess.run(
        [sys.executable, "-c", code, str(work), *map(str, size), arch], env=env, check=True
    )
    return run


def export(run: Path, fmt: str, precision: str, batch: int) -> dict:
    """Export one format; its parity record, or `{"error": line}`."""
    result = steel_keras(
        "export",
        "--run",
        str(run),
        "--format",
        fmt,
        "--precision",
        precision,
        "--batch",
        str(batch),
        "--stage",
        "segmenter",
        "--parity-images",
        "8",
    )
    if result.returncode != 0:
        return {"error": one_line(result)}
    folder = "onnx_int8" if fmt == "onnx" and precision == "int8" else fmt
    parity = json.loads((run / "export" / folder / "segmenter" / "parity.json").read_text())
    return parity["model"]


def benchmark(run: Path, runtimes: str, args: argparse.Namespace, out: Path) -> dict:
    """`steel-keras benchmark`'s JSON, or `{"error": line}`."""
    result = steel_keras(
        "benchmark",
        "--run",
        str(run),
        "--runtimes",
        runtimes,
        "--batch",
        str(args.batch),
        "--iterations",
        str(args.iterations),
        "--rounds",
        str(args.rounds),
        "--json",
        str(out),
    )
    if result.returncode != 0:
        return {"error": one_line(result)}
    return json.loads(out.read_text())


def verdict(precision: str, *records: dict) -> str:
    """`pass` / `FAIL` against the precision's bars, `reported` for INT8, `` without data."""
    if precision not in BARS:
        return "reported"
    diff_bar, dice_bar = BARS[precision]
    measured = [r for r in records if "max_abs_diff" in r]
    if not measured:
        return ""
    ok = all(r["max_abs_diff"] <= diff_bar and r["dice_agreement"] >= dice_bar for r in measured)
    return "pass" if ok else "FAIL"


def base_rows(run: Path, args: argparse.Namespace, tmp: Path) -> list[dict]:
    """ONNX export, then keras, tf_function and onnx timed together."""
    parity = export(run, "onnx", "fp32", args.batch)
    result = benchmark(run, BASE_RUNTIMES, args, tmp / "base.json")
    if "error" in result:
        return [
            {"runtime": "keras,tf_function,onnx", "status": "failed", "reason": result["error"]}
        ]
    rows = []
    for row in result["results"]:
        export_parity = parity if row["runtime"] == "onnx" else {}
        rows.append(
            row
            | {
                "precision": "fp32",
                "export_parity": export_parity,
                "verdict": verdict("fp32", export_parity, row),
            }
        )
    return rows


def export_rows(run: Path, args: argparse.Namespace, tmp: Path) -> list[dict]:
    """Each TensorRT / TF-TRT precision: export, then benchmark it (the files are per format)."""
    rows = []
    for name, fmt, precision in EXPORTS:
        parity = export(run, fmt, precision, args.batch)
        if "error" in parity:
            rows.append(
                {
                    "runtime": name,
                    "precision": precision,
                    "status": "skipped",
                    "reason": parity["error"],
                }
            )
            continue
        result = benchmark(run, fmt, args, tmp / f"{name}.json")
        found = [r for r in result.get("results", []) if r["runtime"] == fmt]
        row = found[0] if found else {"status": "failed", "reason": result.get("error")}
        rows.append(
            row
            | {
                "runtime": name,
                "precision": precision,
                "export_parity": parity,
                "verdict": verdict(precision, parity, row),
            }
        )
    return rows


def _fmt(value: object, spec: str) -> str:
    return "" if value is None else format(value, spec)


def table(rows: list[dict], gpus: list[str], args: argparse.Namespace) -> str:
    """The Markdown table: speed, parity in the benchmark and at export, the verdict."""
    size = "x".join(map(str, args.size)) if not args.run else "the run's size"
    lines = [
        f"# GPU validation: {'; '.join(gpus)}",
        "",
        f"Batch {args.batch} at {size}, {args.iterations} timed batches x {args.rounds} "
        f"round(s); `python {' '.join(sys.argv)}`",
        "",
        "| runtime | images/s | vs keras | p50 ms | p95 ms | max abs diff | Dice agreement"
        " | export max abs diff | export Dice | verdict |",
        "|" + "---|" * 10,
    ]
    notes = []
    for row in rows:
        if row.get("status") != "ok":
            notes.append(f"- {row['runtime']}: {row.get('status')}: {row.get('reason')}")
            continue
        export_parity = row.get("export_parity") or {}
        lines.append(
            "| "
            + " | ".join(
                [
                    row["runtime"],
                    _fmt(row["throughput_ips"], ".1f"),
                    _fmt(row.get("speedup_vs_keras"), ".2f") + "x",
                    _fmt(row["latency_p50_ms"], ".1f"),
                    _fmt(row["latency_p95_ms"], ".1f"),
                    _fmt(row.get("max_abs_diff"), ".1e"),
                    _fmt(row.get("dice_agreement"), ".5f"),
                    _fmt(export_parity.get("max_abs_diff"), ".1e"),
                    _fmt(export_parity.get("dice_agreement"), ".5f"),
                    row.get("verdict", ""),
                ]
            )
            + " |"
        )
    if notes:
        lines += ["", "Not measured:", *notes]
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--run",
        type=Path,
        default=None,
        help="a trained run directory (default: a demo sm Unet run)",
    )
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=(256, 1600),
        help="the demo run's image size (256 1600)",
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--arch",
        default="unet",
        choices=("unet", "unet_separable"),
        help="the demo run's segmenter: sm Unet / ResNet18 (default) or the separable U-Net",
    )
    parser.add_argument("--work", type=Path, default=None, help="keep the demo run here")
    parser.add_argument(
        "--cpu-rehearsal",
        action="store_true",
        help="run the steps without a GPU (TensorRT / TF-TRT rows skipped)",
    )
    parser.add_argument("--write-as", default="gpu-validation", help="results/NAME.{json,md}")
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="write NAME.{json,md} here instead of benchmarks/results",
    )
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    gpus = nvidia_gpus()
    if gpus is None and args.cpu_rehearsal:
        gpus = ["no GPU: CPU rehearsal"]
    elif gpus is None:
        print(
            "gpu_validate: no NVIDIA GPU here (nvidia-smi not found or failed); run it on a "
            "machine with one, in the environment of requirements-gpu.txt",
            file=sys.stderr,
        )
        return 2
    if args.run is not None and not (args.run / "config.json").is_file():
        print(f"gpu_validate: {args.run} is not a run directory (no config.json)", file=sys.stderr)
        return 2
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu-validate-"))
    run = args.run or demo_run(work, tuple(args.size), args.arch)
    with tempfile.TemporaryDirectory(prefix="gpu-validate-") as tmp:
        rows = base_rows(run, args, Path(tmp)) + export_rows(run, args, Path(tmp))
    payload = {
        "command": "python " + " ".join(sys.argv),
        "run": str(run),
        "gpus": gpus,
        "batch": args.batch,
        "iterations": args.iterations,
        "rounds": args.rounds,
        "doctor": as_dicts(diagnose()),
        "rows": rows,
    }
    if args.results is not None:
        _common.RESULTS = args.results
    _common.write_results(args.write_as, payload, table(rows, gpus, args))
    failed = [
        r["runtime"] for r in rows if r.get("verdict") == "FAIL" or r.get("status") == "failed"
    ]
    print("outside the bars or failed: " + ", ".join(failed) if failed else "all within bars")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
