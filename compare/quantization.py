"""Framework-neutral int8: ONNX Runtime static quantization (QDQ, per-channel) of an fp32 ONNX export."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from shared.data.validate import check_calibration


def onnx_static_int8(source: str | os.PathLike, path: str | os.PathLike, calibration: np.ndarray, spec,
                     batch: int = 16) -> Path:
    """Calibrate activation ranges on ``calibration`` (NHWC images) and write a QDQ int8 model."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    images = check_calibration(calibration, spec)
    session = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    layout = session.get_modelmeta().custom_metadata_map.get("twinvision.layout", "NHWC")
    input_name = session.get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            chunks = [images[i:i + batch] for i in range(0, len(images), batch)]
            self.feeds = iter([{input_name: np.ascontiguousarray(c.transpose(0, 3, 1, 2)) if layout == "NCHW"
                                else c} for c in chunks])

        def get_next(self):
            return next(self.feeds, None)

    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}")
    quantize_static(str(source), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    tmp.replace(path)
    return path


# Sparsity is measured on the artifact, not taken from the pruning schedule's target.
_WEIGHTED_OPS = {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1}


def kernel_sparsity(tensors: dict[str, np.ndarray]) -> float:
    """Fraction of exact zeros over every conv and dense kernel of a canonical state (rank-2 and rank-4 ``weight``)."""
    kernels = [np.asarray(v) for k, v in tensors.items() if k.endswith("weight") and np.ndim(v) in (2, 4)]
    if not kernels:
        raise ValueError("kernel_sparsity: no conv or dense kernels (rank-2 / rank-4 '*.weight') in the tensors")
    return float(sum(int((k == 0).sum()) for k in kernels) / sum(k.size for k in kernels))


def tflite_kernel_sparsity(path: str | os.PathLike) -> float:
    """Fraction of exact zeros over the weight operand of every conv / dense op of a float TFLite model."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    # The op list is only reachable through this underscored accessor; it is stable across LiteRT releases.
    ops = [op for op in interpreter._get_ops_details() if op["op_name"] in _WEIGHTED_OPS]
    if not ops:
        raise ValueError(f"{path}: no CONV_2D / FULLY_CONNECTED ops to measure sparsity on")
    kernels = [interpreter.get_tensor(int(op["inputs"][_WEIGHTED_OPS[op["op_name"]]])) for op in ops]
    return float(sum(int((k == 0).sum()) for k in kernels) / sum(k.size for k in kernels))
