"""INT8 ONNX for the CPU: static quantisation with ONNX Runtime, calibrated on dataset images.

``steel-keras export --run DIR --format onnx --precision int8`` quantises the FP32 ONNX export
(made first where missing) with :func:`onnxruntime.quantization.quantize_static`:

- QDQ format (``QuantizeLinear`` / ``DequantizeLinear`` pairs around each quantised op), which
  ONNX Runtime's CPU provider fuses into integer kernels; on a CPU with AVX-512 VNNI those run
  convolutions several times faster than FP32;
- weights signed per output channel, activations unsigned 8-bit per tensor;
- weights in 7 bits (``reduce_range``): without VNNI, x86 CPUs multiply unsigned-by-signed 8-bit
  values with an instruction (``vpmaddubsw``) whose 16-bit sums saturate, and ONNX Runtime's
  documentation recommends 7-bit weights there. Measured on the test suite's demo segmenter
  (``tests/test_deploy.py``, 4 images) on an AVX2 CPU without VNNI: masks agreeing with Keras
  at Dice 0.86 with 8-bit weights, 0.96 with 7-bit. An exported model may run on either kind
  of CPU, so the 7-bit weights are always used;
- activation ranges from the min / max over the calibration images (real images of the run's
  dataset, validation images first), fed one at a time.

The result is ``RUN_DIR/export/onnx_int8/{stage}/{stem}.onnx``, run by the ``onnx_int8``
runtime. It is an approximation: its parity with Keras (``parity.json``) is reported, not held
to the FP32 export's 1e-3 bar. Check the thresholded-mask Dice agreement before trusting it.

Runs inside the export worker subprocess (see :mod:`steel_keras.deploy.export`).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from steel_keras.errors import DataError


def quantize_onnx(source: str | Path, out: str | Path, *, calibration: str | Path,
                  per_channel: bool = True, **_options: Any) -> dict[str, Any]:
    """Quantise an FP32 ONNX model to INT8 (QDQ), calibrated on the images in ``calibration``.

    Args:
        source: the FP32 `.onnx` file.
        out: the INT8 `.onnx` file to write (replaced only once it is complete and checked).
        calibration: a `.npy` file of float32 images `(N, H, W, 1)` in `[0, 1]`.
        per_channel: one weight scale per output channel (more accurate) or per tensor.

    Returns:
        The precision, the number of calibration images and the number of quantised nodes.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    images = np.load(calibration)
    if images.ndim != 4 or not len(images):
        raise DataError(f"{calibration}: expected calibration images (N, H, W, 1), got shape "
                        f"{images.shape}")
    input_name = onnx.load(str(source), load_external_data=False).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter([{input_name: images[i:i + 1].astype(np.float32)}
                                  for i in range(len(images))])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="steel-keras-int8-") as tmp:
        prepared, partial = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        # Shape inference and graph clean-up first, as ONNX Runtime recommends (sympy-based
        # symbolic shape inference is not needed: the image size is fixed).
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(partial), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=per_channel, reduce_range=True,
                        activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
        model = onnx.load(str(partial))
        onnx.checker.check_model(model)
        quantised = sum(node.op_type == "DequantizeLinear" for node in model.graph.node)
        shutil.move(str(partial), str(out))
    return {"precision": "int8", "calibration_images": int(len(images)),
            "dequantize_nodes": int(quantised), "input": input_name}
