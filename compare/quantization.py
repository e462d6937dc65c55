"""Framework-neutral int8: ONNX Runtime static quantization (QDQ, per-channel) of an fp32 ONNX export,
and the check that an int8 ONNX file cannot saturate the integer kernels of CPUs without VNNI."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from shared.cpu import INT16_MAX, Int8Setting, int8_setting, u8s8_pair_bound
from shared.data.validate import check_calibration

# Ops whose second input is a weight that ONNX Runtime runs through its u8 x s8 integer kernels once fused.
_WEIGHT_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def onnx_static_int8(source: str | os.PathLike, path: str | os.PathLike, calibration: np.ndarray, spec,
                     batch: int = 16, int8: Int8Setting | None = None) -> Path:
    """Calibrate activation ranges on ``calibration`` (NHWC images) and write a QDQ int8 model.

    int8: the weight range for the CPU's kernels (default: ``shared.cpu.int8_setting()`` of this machine);
    ``reduce_range`` gives 7-bit weights, as ONNX Runtime's quantization guide advises for CPUs without VNNI.
    """
    int8 = int8 or int8_setting()
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
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, reduce_range=int8.reduce_range)
    tmp.replace(path)
    return path


def u8s8_headroom(path: str | os.PathLike) -> dict:
    """Whether an int8 ONNX (QDQ) file is exact on x86 CPUs without VNNI.

    Such CPUs add two u8 x s8 products into a saturating int16 (VPMADDUBSW). Activations reach every uint8
    value (QuantizeLinear saturates to the type's range; int8 activations are shifted to uint8 by the
    kernels), so the bound depends on the weights alone: 2 x 255 x max|w| must stay <= 32767, which
    holds for 7-bit weights (64) and fails for full-range ones (128).

    Returns max_abs_weight (over every integer weight feeding a Conv / Gemm / MatMul), pair_bound, and
    exact_without_vnni.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    weight_inputs = {n.input[1] for n in graph.node if n.op_type in _WEIGHT_OPS and len(n.input) > 1}
    worst = 0
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.output[0] in weight_inputs and node.input[0] in initializers:
            values = numpy_helper.to_array(initializers[node.input[0]])
            if values.dtype == np.int8:  # uint8 weights go through u8 x u8 kernels, which do not saturate
                worst = max(worst, int(np.abs(values.astype(np.int32)).max()))
    if not worst:
        raise ValueError(f"{path}: no integer weight feeds a {'/'.join(_WEIGHT_OPS)} node: not an int8 QDQ model")
    bound = u8s8_pair_bound(worst)
    return {"max_abs_weight": worst, "pair_bound": bound, "exact_without_vnni": bound <= INT16_MAX}


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
