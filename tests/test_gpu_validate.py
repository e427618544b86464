"""``benchmarks/gpu_validate.py``: one line and exit code 2 without a GPU; its verdicts and
table; the whole sequence rehearsed on the CPU (slow), where TensorRT and TF-TRT are skipped."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_validate.py"
NO_GPU = pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a GPU is here")


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_validate", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@NO_GPU
def test_without_a_gpu_one_line_and_exit_2(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--work", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "gpu_validate: no NVIDIA GPU here (nvidia-smi not found or failed); run it on a "
        "machine with one, in the environment of requirements-gpu.txt"
    ]
    assert list(tmp_path.iterdir()) == []  # nothing done


def test_verdicts_against_the_bars():
    gv = load_script()
    exact = {"max_abs_diff": 2e-4, "dice_agreement": 1.0}
    assert gv.verdict("fp32", exact, exact) == "pass"
    assert gv.verdict("fp32", exact, {"max_abs_diff": 5e-3, "dice_agreement": 1.0}) == "FAIL"
    assert gv.verdict("fp16", {"max_abs_diff": 5e-3, "dice_agreement": 0.995}) == "pass"
    assert gv.verdict("fp16", {"max_abs_diff": 5e-3, "dice_agreement": 0.98}) == "FAIL"
    assert gv.verdict("int8", {"max_abs_diff": 0.9, "dice_agreement": 0.7}) == "reported"
    assert gv.verdict("fp32", {}, {"status": "failed"}) == ""


def test_table_rows_and_skipped_reasons():
    gv = load_script()
    ok = {
        "runtime": "tensorrt_fp16",
        "status": "ok",
        "throughput_ips": 812.5,
        "speedup_vs_keras": 9.1,
        "latency_p50_ms": 9.8,
        "latency_p95_ms": 10.4,
        "max_abs_diff": 3e-3,
        "dice_agreement": 0.9987,
        "verdict": "pass",
        "export_parity": {"max_abs_diff": 4e-3, "dice_agreement": 0.9991},
    }
    skipped = {"runtime": "tftrt_fp32", "status": "skipped", "reason": "TF-TRT needs ..."}
    args = Namespace(run=None, size=(256, 1600), batch=8, iterations=20, rounds=1)
    text = gv.table([ok, skipped], ["NVIDIA H200, 570.86"], args)
    assert text.startswith("# GPU validation: NVIDIA H200, 570.86\n")
    assert (
        "| tensorrt_fp16 | 812.5 | 9.10x | 9.8 | 10.4 | 3.0e-03 | 0.99870 | 4.0e-03 | "
        "0.99910 | pass |"
    ) in text
    assert "- tftrt_fp32: skipped: TF-TRT needs ..." in text


@pytest.mark.slow
@NO_GPU
def test_cpu_rehearsal_runs_every_step(tmp_path):
    """The script end to end on a tiny separable U-Net (5 min 16 s on the loaded 2-core machine)."""
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--cpu-rehearsal",
            "--arch",
            "unet_separable",
            "--size",
            "64",
            "128",
            "--batch",
            "2",
            "--iterations",
            "1",
            "--work",
            str(tmp_path / "work"),
            "--results",
            str(tmp_path),
            "--write-as",
            "rehearsal",
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    payload = json.loads((tmp_path / "rehearsal.json").read_text())
    rows = {row["runtime"]: row for row in payload["rows"]}
    assert [rows[r]["verdict"] for r in ("keras", "tf_function", "onnx")] == ["pass"] * 3
    assert rows["onnx"]["export_parity"]["dice_agreement"] >= 0.999
    for name in ("tensorrt_fp32", "tensorrt_fp16", "tensorrt_int8"):
        assert rows[name]["status"] == "skipped" and "TensorRT" in rows[name]["reason"]
    assert "TensorFlow 2.17 or older" in rows["tftrt_fp16"]["reason"]
    assert [c["name"] for c in payload["doctor"]][:2] == ["TensorFlow", "GPU"]
    assert "| onnx |" in (tmp_path / "rehearsal.md").read_text()
