"""The GPU and TF-TRT requirement sets resolve, with pip, to one TensorFlow: the CUDA build.

``pip install --dry-run --ignore-installed --report`` resolves each set against the package
index without installing anything (wheel metadata only; about a minute each on CI's network,
the two run side by side). Lines marked ``NVIDIA index`` are left out, with the
``--extra-index-url`` line: PyPI holds only placeholders for TensorRT's libraries, which fetch
the real wheels from NVIDIA's index while pip reads their metadata, and CI reaches PyPI only.
Needs the package index (marker ``pypi``; CI has it).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Every distribution that installs the `tensorflow` package.
TENSORFLOWS = {
    "tensorflow",
    "tensorflow-cpu",
    "tensorflow-gpu",
    "tensorflow-intel",
    "intel-tensorflow",
    "tf-nightly",
    "tf-nightly-cpu",
}
ONNX_RUNTIMES = {"onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino"}
#: Base dependencies each set replaces by its own build.
REPLACED = {"tensorflow", "tensorflow-cpu", "onnxruntime"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_lines(path: Path) -> list[str]:
    """The requirement lines of a file, comments and options dropped."""
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("-")]


def split(requirement: str) -> tuple[str, str]:
    """`name[extras]>=1,<2; marker` -> (canonical name, specifier without spaces)."""
    match = re.match(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*([^;]*)", requirement)
    return canonical(match.group(1)), match.group(3).replace(" ", "")


def pyproject_dependencies() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return dict(split(r) for r in project["dependencies"])


def test_gpu_set_lists_every_dependency_with_the_same_pins():
    mine = dict(split(r) for r in requirement_lines(ROOT / "requirements-gpu.txt"))
    for name, spec in pyproject_dependencies().items():
        if name not in REPLACED:
            assert mine.get(name) == spec, f"requirements-gpu.txt: {name}{spec} differs"
    assert mine["tensorflow"] == "==2.21.0" and "tensorflow-cpu" not in mine
    assert "onnxruntime-gpu" in mine and "onnxruntime" not in mine
    # What steel_keras.deploy.tensorrt imports: tensorrt and cuda-python's runtime bindings.
    assert "tensorrt-cu12" in mine and "cuda-python" in mine


def test_tftrt_set_lists_every_dependency():
    mine = dict(split(r) for r in requirement_lines(ROOT / "requirements-tftrt.txt"))
    missing = set(pyproject_dependencies()) - REPLACED - set(mine)
    assert not missing, f"requirements-tftrt.txt lacks {sorted(missing)}"
    assert mine["tensorflow"] == "==2.17.1" and "tensorrt-libs" in mine


def test_conda_gpu_environment_uses_the_gpu_set():
    text = (ROOT / "environment-gpu.yml").read_text()
    entries = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert "      - -r requirements-gpu.txt" in entries
    assert not [line for line in entries if "tensorflow" in line or "-e ." in line]
    assert "pip install --no-deps -e ." in text  # the command in its header


def dry_run(requirements: Path, tmp_path: Path) -> subprocess.Popen:
    """Start pip's resolver on `requirements` less its NVIDIA-index lines."""
    kept = [
        line
        for line in requirements.read_text().splitlines()
        if "NVIDIA index" not in line and not line.startswith("--extra-index-url")
    ]
    filtered = tmp_path / requirements.name
    filtered.write_text("\n".join(kept) + "\n")
    report = tmp_path / f"{requirements.stem}.json"
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--dry-run",
        "--ignore-installed",
        "--only-binary",
        ":all:",
        "--quiet",
        "--report",
        str(report),
        "-r",
        str(filtered),
    ]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def resolved(process: subprocess.Popen, report: Path) -> dict[str, str]:
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    install = json.loads(report.read_text())["install"]
    return {canonical(i["metadata"]["name"]): i["metadata"]["version"] for i in install}


@pytest.mark.pypi
def test_gpu_and_tftrt_sets_resolve_to_one_cuda_tensorflow(tmp_path):
    runs = {
        name: dry_run(ROOT / f"{name}.txt", tmp_path)
        for name in ("requirements-gpu", "requirements-tftrt")
    }
    found = {name: resolved(p, tmp_path / f"{name}.json") for name, p in runs.items()}
    gpu, tftrt = found["requirements-gpu"], found["requirements-tftrt"]
    assert {n: v for n, v in gpu.items() if n in TENSORFLOWS} == {"tensorflow": "2.21.0"}
    assert {n: v for n, v in tftrt.items() if n in TENSORFLOWS} == {"tensorflow": "2.17.1"}
    # The CUDA build: `tensorflow` with its CUDA 12 libraries (the and-cuda extra).
    for packages in (gpu, tftrt):
        assert {"nvidia-cudnn-cu12", "nvidia-cublas-cu12", "nvidia-cuda-runtime-cu12"} <= set(
            packages
        )
    assert [n for n in gpu if n in ONNX_RUNTIMES] == ["onnxruntime-gpu"]
    assert [n for n in tftrt if n in ONNX_RUNTIMES] == ["onnxruntime"]
    assert "cuda-python" in gpu and gpu["numpy"].startswith("2.")
    assert tftrt["numpy"].startswith("1.") and tftrt["tensorboard"].startswith("2.17")
