"""What this machine can run: TensorFlow, GPU, TensorRT, TF-TRT, ONNX Runtime, OpenVINO, CPU.

:func:`diagnose` returns one :class:`Check` per piece, each ``ok``, ``missing`` or ``problem``
with what was found and, where something is missing or wrong, the command that fixes it.
``steel-keras doctor`` prints them. TensorFlow is probed in a subprocess (its build, its devices):
a broken CUDA install can crash the process that imports it, and the doctor must still answer.
Nothing else imports TensorFlow.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

GPU_INSTALL = "pip install -r requirements-gpu.txt && pip install --no-deps -e ."
TFTRT_INSTALL = (
    "pip install -r requirements-tftrt.txt && pip install --no-deps -e . (TensorFlow 2.17 + "
    "TensorRT 8.6, see the file's header), or NVIDIA's container nvcr.io/nvidia/tensorflow"
)
TENSORRT_INSTALL = (
    'pip install "tensorrt-cu12>=10.8,<11" "cuda-python>=12.6,<13" '
    "--extra-index-url https://pypi.nvidia.com"
)
ORT_GPU_INSTALL = (
    'pip uninstall -y onnxruntime && pip install "onnxruntime-gpu[cuda,cudnn]>=1.22,<1.27"'
)
OPENVINO_INSTALL = "pip install openvino nncf"
NEEDS_GPU = "an NVIDIA GPU and its driver (nvidia-smi); then: " + GPU_INSTALL
#: Every distribution that installs the `tensorflow` package: two of them overwrite each other.
TENSORFLOWS = ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-intel", "tf-nightly")
ONNX_RUNTIMES = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino")
#: CPU features that decide the fastest CPU runtime (wide vectors, INT8 dot products, bfloat16).
CPU_FEATURES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16")

_TF_PROBE = """
import json, os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf
info = tf.sysconfig.get_build_info()
print(json.dumps({"version": tf.__version__, "cuda": bool(info.get("is_cuda_build")),
                  "tensorrt": bool(info.get("is_tensorrt_build")),
                  "cuda_version": info.get("cuda_version"),
                  "devices": [d.device_type for d in tf.config.list_physical_devices()]}))
"""


@dataclass
class Check:
    """One piece of the environment.

    Args:
        name: what was checked (`TensorFlow`, `GPU`, ...).
        status: `"ok"`, `"missing"` or `"problem"`.
        detail: what was found, one line.
        fix: the command (or what is needed) where the status is not ok.
    """

    name: str
    status: str
    detail: str
    fix: str | None = None


def installed(names: tuple[str, ...]) -> dict[str, str]:
    """`{distribution: version}` of those of `names` that are installed."""
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def probe_tensorflow(timeout: float = 300) -> dict[str, Any]:
    """TensorFlow's version, build (CUDA, TensorRT) and devices, from a fresh subprocess.

    Returns:
        The probe's fields, or `{"error": one line}` where TensorFlow could not be imported.
    """
    try:
        out = subprocess.run(
            [sys.executable, "-c", _TF_PROBE],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"importing TensorFlow took over {timeout:.0f} s"}
    lines = out.stdout.strip().splitlines()
    if out.returncode == 0 and lines:
        return json.loads(lines[-1])
    errors = [line for line in out.stderr.strip().splitlines() if line.strip()]
    return {"error": (errors[-1] if errors else f"exit code {out.returncode}")[:300]}


def nvidia_gpus() -> list[str] | None:
    """`["NAME, driver VERSION", ...]` from nvidia-smi, or None where it is absent or fails."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None
    gpus = [line.strip() for line in out.stdout.splitlines() if line.strip()]
    return gpus if out.returncode == 0 and gpus else None


def check_tensorflow(tf: dict[str, Any], gpus: list[str] | None) -> Check:
    """Which TensorFlow is installed, its build, and whether it sees the GPU."""
    dists = installed(TENSORFLOWS)
    names = ", ".join(f"{k} {v}" for k, v in dists.items())
    if len(dists) > 1:
        return Check(
            "TensorFlow",
            "problem",
            f"{len(dists)} TensorFlow distributions installed "
            f"({names}): they overwrite each other's files",
            f"pip uninstall -y {' '.join(dists)}, then on a GPU machine: {GPU_INSTALL}"
            f"; elsewhere: pip install tensorflow-cpu=={next(iter(dists.values()))}",
        )
    if "error" in tf:
        return Check(
            "TensorFlow",
            "missing" if not dists else "problem",
            f"import failed: {tf['error']}",
            f'pip install "tensorflow-cpu==2.21.0"; on an NVIDIA GPU: {GPU_INSTALL}',
        )
    build = (
        f"CUDA {tf.get('cuda_version') or ''} build".replace("  ", " ")
        if tf["cuda"]
        else ("CPU build")
    )
    detail = f"{tf['version']} ({names}; {build}; devices: {', '.join(tf['devices'])})"
    if gpus and "GPU" not in tf["devices"]:
        return Check("TensorFlow", "problem", detail + "; the GPU is not used", GPU_INSTALL)
    return Check("TensorFlow", "ok", detail)


def check_gpu(gpus: list[str] | None) -> Check:
    if gpus is None:
        return Check(
            "GPU", "missing", "no NVIDIA GPU or driver (nvidia-smi not found or failed)", NEEDS_GPU
        )
    return Check("GPU", "ok", "; ".join(gpus))


def check_tensorrt() -> Check:
    """TensorRT's version and whether it reaches a GPU (steel_keras.deploy.tensorrt's test)."""
    from steel_keras.deploy.tensorrt import tensorrt_status

    found = installed(("tensorrt", "tensorrt-cu12", "tensorrt-cu13", "tensorrt-libs"))
    reason = tensorrt_status()
    if reason is None:
        return Check("TensorRT", "ok", ", ".join(f"{k} {v}" for k, v in found.items()))
    fix = TENSORRT_INSTALL if "not installed" in reason or "cuda-python" in reason else NEEDS_GPU
    return Check("TensorRT", "missing", reason.split(";")[0], fix)


def check_tftrt(tf: dict[str, Any]) -> Check:
    if tf.get("tensorrt"):
        return Check("TF-TRT", "ok", f"TensorFlow {tf['version']} is built with TensorRT")
    what = f"TensorFlow {tf['version']}" if "version" in tf else "TensorFlow"
    return Check(
        "TF-TRT",
        "missing",
        f"{what} is not built with TensorRT (2.17 and older are)",
        TFTRT_INSTALL,
    )


def check_onnxruntime(gpus: list[str] | None) -> Check:
    dists = installed(ONNX_RUNTIMES)
    if len(dists) > 1:
        names = ", ".join(f"{k} {v}" for k, v in dists.items())
        return Check(
            "ONNX Runtime",
            "problem",
            f"several builds installed ({names}): they overwrite each other's files",
            f"pip uninstall -y {' '.join(dists)}, then one of them",
        )
    try:
        import onnxruntime as ort
    except (ImportError, OSError) as exc:
        return Check("ONNX Runtime", "missing", f"import failed: {exc}", "pip install onnxruntime")
    providers = ort.get_available_providers()
    detail = f"{ort.__version__}, providers: {', '.join(providers)}"
    if gpus and "CUDAExecutionProvider" not in providers:
        return Check("ONNX Runtime", "missing", detail + " (no CUDA provider)", ORT_GPU_INSTALL)
    return Check("ONNX Runtime", "ok", detail)


def check_openvino() -> Check:
    from steel_keras.deploy.openvino import openvino_status

    reason = openvino_status(int8=True)
    if reason:
        return Check("OpenVINO", "missing", reason.split(";")[0], OPENVINO_INSTALL)
    import openvino as ov

    devices = ov.Core().available_devices
    nncf = installed(("nncf",)).get("nncf")
    return Check(
        "OpenVINO",
        "ok",
        f"{ov.__version__.split('-')[0]}, NNCF {nncf}, devices: {', '.join(devices)}",
    )


def check_cpu() -> Check:
    from steel_keras.deploy.bf16 import cpu_info
    from steel_keras.deploy.roofline import cpu_peak

    info = cpu_info()
    if info is None:
        return Check("CPU", "ok", "no /proc/cpuinfo here: features unknown")
    flags = set(info.get("flags", "").split())
    features = [f for f in CPU_FEATURES if f in flags] or ["none of " + ", ".join(CPU_FEATURES)]
    peak = cpu_peak()
    gflops = f"{peak['peak_gflops']:.0f}" if peak["peak_gflops"] else "unknown"
    return Check(
        "CPU",
        "ok",
        f"{info.get('model name', 'unknown')}, {peak['cores']} cores, "
        f"{', '.join(features)}; float32 peak {gflops} GFLOP/s "
        f"({peak['instructions']}, {peak['mhz'] or 0:.0f} MHz {peak['clock_source']})",
    )


def diagnose() -> list[Check]:
    """Every check, TensorFlow first (its probe runs in a subprocess)."""
    gpus = nvidia_gpus()
    tf = probe_tensorflow()
    return [
        check_tensorflow(tf, gpus),
        check_gpu(gpus),
        check_tensorrt(),
        check_tftrt(tf),
        check_onnxruntime(gpus),
        check_openvino(),
        check_cpu(),
    ]


def as_dicts(checks: list[Check]) -> list[dict[str, Any]]:
    """The checks as JSON-ready dictionaries."""
    return [asdict(check) for check in checks]
