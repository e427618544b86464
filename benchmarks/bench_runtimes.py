"""Every runtime on every segmenter family at full size: speed, memory and parity with Keras.

For each family (sm Unet / FPN / Linknet on resnet18, the Xception U-Net, the separable U-Net)
at 256 x 1600, batch 8:

1. a run directory with an untrained segmenter whose batch-norm statistics are set from real
   images (``steel_keras.deploy.demo``: outputs spread like a trained model's, not saturated),
   exported to ONNX, SavedModel and INT8 ONNX (ONNX Runtime's static quantisation, calibrated
   on 32 real images) with ``export_run`` (conversion in a fresh subprocess, parity on 8 real
   images) -- all of this in a subprocess of its own per family, so that this process never
   loads TensorFlow;
2. ``benchmark_run``: the same two real batches through keras (``model.predict``), tf_function,
   tf_bf16, savedmodel, onnx, onnx_int8, tensorrt and tftrt, each runtime in its own
   subprocess, taking turns for ``--rounds`` rounds; TensorRT and TF-TRT are listed as skipped
   where they cannot run.

``--run DIR`` adds a trained run directory (its segmenter, exported the same way) after the
families, e.g. the quick-cpu segmenter trained at full size::

    steel-keras train-segmenter --image-size 256x1600 --epochs 3 --out /tmp/full

Writes ``results/runtimes.json`` and ``results/runtimes.md`` (``--write-as NAME``:
``results/NAME.{json,md}``).

    python benchmarks/bench_runtimes.py [--families unet,fpn] [--run DIR] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_results  # noqa: E402

from steel_keras.deploy import benchmark_run, markdown_report  # noqa: E402

FAMILIES = {  # name: (arch, backbone)
    "unet": ("unet", "resnet18"),
    "fpn": ("fpn", "resnet18"),
    "linknet": ("linknet", "resnet18"),
    "unet_xception": ("unet_xception", None),
    "unet_separable": ("unet_separable", None),
}


def build(family: str, run_dir: Path, data: Path, size: tuple[int, int]) -> None:
    """The run directory with an untrained, batch-norm calibrated segmenter."""
    from steel_keras.deploy.demo import make_demo_run

    arch, backbone = FAMILIES[family]
    make_demo_run(run_dir, data, arch=arch, backbone=backbone, seg_size=size, classifier=None,
                  calibration_images=4)


def export(family: str, run_dir: Path, data: Path, size: tuple[int, int],
           formats: tuple[str, ...] = ("onnx", "savedmodel")) -> None:
    """The exports (each conversion in its own subprocess), their parity saved."""
    from steel_keras.deploy import export_run

    parity = {}
    for fmt in formats:
        result = export_run(run_dir, fmt, parity_images=8, batch=4, stages=("segmenter",),
                            calibration_images=32, log=print)
        parity[fmt] = result.parity["segmenter/model"] | {
            "export_seconds": result.seconds["segmenter/model"]}
    (run_dir / "export_parity.json").write_text(json.dumps(parity, indent=2))


def _in_subprocess(step: str, family: str, run_dir: Path, data: Path,
                   size: tuple[int, int], formats: tuple[str, ...]) -> int:
    """`build` or `export` in a fresh process (this one never loads TensorFlow); exit code."""
    extra = ", tuple(sys.argv[7].split(','))" if step == "export" else ""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import bench_runtimes as b; "
            f"b.{step}(sys.argv[2], b.Path(sys.argv[3]), b.Path(sys.argv[4]), "
            f"(int(sys.argv[5]), int(sys.argv[6])){extra})")
    args = [str(Path(__file__).resolve().parent), family, str(run_dir), str(data), *map(str, size),
            ",".join(formats)]
    return subprocess.run([sys.executable, "-c", code, *args], check=False).returncode


def _prepare(family: str, run_dir: Path, data: Path, size: tuple[int, int],
             runtimes: list[str]) -> str | None:
    """Build and export (ONNX, and SavedModel where timed) where not done yet; None or why not."""
    formats = ("onnx",) + tuple(f for f in ("savedmodel", "onnx_int8") if f in runtimes)
    if family not in FAMILIES and not (run_dir / "segmenter" / "model.keras").is_file():
        return f"{run_dir} holds no segmenter/model.keras"
    for step, done in (("build", run_dir / "segmenter" / "model.keras"),
                       ("export", run_dir / "export_parity.json")):
        if not done.is_file() and _in_subprocess(step, family, run_dir, data, size,
                                                 formats) != 0:
            return f"{step} failed (see the output above)"
    return None


def _dataset(root: Path) -> Path:
    from steel_keras.synthetic import generate_dataset

    generate_dataset(root, n_train=40, n_test=0, seed=0, progress=False)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--runtimes",
                        default="keras,tf_function,tf_bf16,savedmodel,onnx,onnx_int8,tensorrt,tftrt")
    parser.add_argument("--size", type=int, nargs=2, default=(256, 1600))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--work", default=None, help="keep the run directories here")
    parser.add_argument("--write-as", default="runtimes", help="results/NAME.{json,md}")
    parser.add_argument("--run", action="append", default=[], type=Path,
                        help="a trained run directory to benchmark too (repeatable)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-runtimes-"))
    data = work / "data" if (work / "data" / "train.csv").is_file() else _dataset(work / "data")
    results, exports, started = [], {}, time.perf_counter()
    jobs = [(family, work / family) for family in args.families.split(",") if family]
    jobs += [(f"run:{run.name}", run) for run in args.run]
    for family, run_dir in jobs:
        print(f"== {family}: build and export", flush=True)
        failed = _prepare(family, run_dir, data, tuple(args.size), args.runtimes.split(","))
        if failed:
            exports[family] = {"failed": failed}
            continue
        exports[family] = json.loads((run_dir / "export_parity.json").read_text())
        print(f"== {family}: benchmark", flush=True)
        result = benchmark_run(run_dir, args.runtimes.split(","), batch=args.batch,
                               iterations=args.iterations, rounds=args.rounds,
                               log=lambda line: print(line, flush=True))
        for row in result["results"]:
            row["model"] = family
        results.append(result)
        print(markdown_report(result), flush=True)
    write_results(args.write_as, _payload(args, results, exports, started),
                  _table(results, exports))


def _payload(args: argparse.Namespace, results: list[dict], exports: dict,
             started: float) -> dict:
    return {"command": "python " + " ".join(sys.argv), "size": list(args.size),
            "batch": args.batch, "iterations": args.iterations, "rounds": args.rounds,
            "seconds": time.perf_counter() - started, "export_parity": exports,
            "benchmarks": results}


def _table(results: list[dict], exports: dict) -> str:
    rows = [r for result in results for r in result["results"]]
    merged = {**results[0], "results": rows,
              "load_average": [results[0]["load_average"][0], results[-1]["load_average"][1]]
              if results[0].get("load_average") else None}
    lines = ["# Runtimes at full size on this machine", "", "`" + " ".join(sys.argv) + "`", "",
             markdown_report(merged), "Export parity with Keras (8 real images, at export):",
             "", "| family | export | max abs diff | Dice agreement | export s |",
             "|---|---|---|---|---|"]
    for family, parity in exports.items():
        if "failed" in parity:
            lines.append(f"| {family} | {parity['failed']} | | | |")
            continue
        for fmt, record in parity.items():
            lines.append(f"| {family} | {fmt} | {record['max_abs_diff']:.1e} | "
                         f"{record['dice_agreement']:.5f} | {record['export_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
