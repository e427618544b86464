"""``steel-keras doctor`` on this machine: what it finds, and a fix for each missing piece."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from steel_keras.deploy.doctor import (
    GPU_INSTALL,
    TFTRT_INSTALL,
    check_tensorflow,
    check_tftrt,
    installed,
)

NAMES = ["TensorFlow", "GPU", "TensorRT", "TF-TRT", "ONNX Runtime", "OpenVINO", "CPU"]


@pytest.fixture(scope="module")
def report() -> str:
    result = subprocess.run(
        [sys.executable, "-m", "steel_keras", "doctor"], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    return result.stdout


def line_of(report: str, name: str) -> list[str]:
    """The check's line and, where there is one, its `fix:` line."""
    lines = report.splitlines()
    index = next(i for i, line in enumerate(lines) if line[9:].startswith(name + " "))
    following = lines[index + 1] if index + 1 < len(lines) else ""
    return [lines[index]] + ([following.strip()] if following.strip().startswith("fix:") else [])


def test_every_check_is_reported_with_a_fix_where_missing(report):
    for name in NAMES:
        found = line_of(report, name)
        status = found[0].split()[0]
        assert status in ("ok", "MISSING", "PROBLEM"), found
        assert (len(found) == 2) == (status != "ok"), found  # a fix exactly where needed
    import tensorflow as tf

    assert line_of(report, "TensorFlow")[0].startswith("ok ") and tf.__version__ in report
    assert line_of(report, "ONNX Runtime")[0].startswith("ok ")
    assert "CPUExecutionProvider" in report


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has a GPU")
def test_without_a_gpu_it_names_what_is_missing(report):
    gpu = line_of(report, "GPU")
    assert gpu[0].startswith("MISSING") and "requirements-gpu.txt" in gpu[1]
    trt = line_of(report, "TensorRT")
    assert trt[0].startswith("MISSING")
    if "import tensorrt" in trt[0]:
        assert "--extra-index-url https://pypi.nvidia.com" in trt[1] and "cuda-python" in trt[1]
    assert report.strip().splitlines()[-1].startswith("missing or broken: GPU, TensorRT")


def test_json_output_has_every_check():
    result = subprocess.run(
        [sys.executable, "-m", "steel_keras", "doctor", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    checks = json.loads(result.stdout)
    assert [c["name"] for c in checks] == NAMES
    for check in checks:
        assert set(check) == {"name", "status", "detail", "fix"}
        assert (check["fix"] is None) == (check["status"] == "ok")
    import tensorflow as tf

    assert checks[0]["detail"].startswith(tf.__version__ + " (")  # the subprocess probe's
    openvino = next(c for c in checks if c["name"] == "OpenVINO")
    if openvino["status"] == "ok":
        assert "CPU" in openvino["detail"] and "NNCF" in openvino["detail"]


def test_verdicts_on_other_machines():
    """The verdicts for probes this machine cannot give: a GPU TensorFlow does not use, TF-TRT."""
    cpu_build = {"version": "2.21.0", "cuda": False, "tensorrt": False, "devices": ["CPU"]}
    on_gpu_machine = check_tensorflow(cpu_build, ["NVIDIA H200, 570.86"])
    if len(installed(("tensorflow", "tensorflow-cpu"))) == 1:
        assert on_gpu_machine.status == "problem" and on_gpu_machine.fix == GPU_INSTALL
        assert "the GPU is not used" in on_gpu_machine.detail
        assert check_tensorflow(cpu_build, None).status == "ok"
    assert check_tftrt({"version": "2.17.1", "tensorrt": True}).status == "ok"
    missing = check_tftrt({"version": "2.21.0", "tensorrt": False})
    assert missing.status == "missing" and missing.fix == TFTRT_INSTALL
    assert "requirements-tftrt.txt" in TFTRT_INSTALL
