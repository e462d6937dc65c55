"""The fp32 artifacts of a pair of twins that hold the same weights, made once and cached.

Used by a task's run and by the reference workloads: safetensors, torch's
ExportedProgram (.pt2) and ONNX, TensorFlow's SavedModel, ONNX, .keras and
TFLite. Each artifact is recorded as ok (with its size and time), skipped
(with the reason) or failed (with the error); a failure leaves the others.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .size import artifact_bytes

# (artifact, framework, file name in the cache); the order matters: TFLite converts the SavedModel.
ARTIFACTS = (
    ("safetensors", "torch", "model.safetensors"),
    ("pt2", "torch", "model.pt2"),
    ("onnx-from-torch", "torch", "model-torch.onnx"),
    ("onnx-from-tensorflow", "tensorflow", "model-tensorflow.onnx"),
    ("saved_model", "tensorflow", "saved_model"),
    ("keras", "tensorflow", "model.keras"),
    ("tflite-fp32", "tensorflow", "model-fp32.tflite"),
)


@dataclass
class Exported:
    """paths: artifact -> file or folder; rows: the ``exports`` rows; sizes: the ``size`` rows."""

    paths: dict[str, Path] = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)
    sizes: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    tracebacks: list[str] = field(default_factory=list)


def _makers(twins, models: dict, spec, paths: dict[str, Path]) -> dict[str, Callable[[Path], Any]]:
    torch_twin, tf_twin = twins["torch"], twins["tensorflow"]
    return {
        "safetensors": lambda p: torch_twin.bridge.save_weights(models["torch"], p),
        "pt2": lambda p: torch_twin.export.export_program(models["torch"], spec, p),
        "onnx-from-torch": lambda p: torch_twin.export.export_onnx(models["torch"], spec, p),
        "onnx-from-tensorflow": lambda p: tf_twin.export.export_onnx(models["tensorflow"], spec, p),
        "saved_model": lambda p: tf_twin.export.export_program(models["tensorflow"], spec, p),
        "keras": lambda p: tf_twin.export.save_keras(models["tensorflow"], p),
        "tflite-fp32": lambda p: tf_twin.export.export_tflite(paths["saved_model"], p),
    }


def export_all(twins, models: dict, spec, cache, only: tuple[str, ...] | None = None,
               skip_reason: str | None = None) -> Exported:
    """Every artifact of ``ARTIFACTS`` (or those in ``only``) from ``models`` ({framework: model}), through
    ``cache`` (a ``TaskCache``). With ``skip_reason`` (a model that does not export whole), only the
    safetensors file is written and the rest are recorded as skipped with that reason."""
    out = Exported()
    makers = _makers(twins, models, spec, out.paths)
    for name, framework, filename in ARTIFACTS:
        if only is not None and name not in only:
            continue
        if skip_reason and name != "safetensors":
            out.rows.append({"artifact": name, "framework": framework, "status": "skipped", "reason": skip_reason})
            continue
        started = time.perf_counter()
        try:
            if framework not in models:
                raise RuntimeError(f"no {framework} model to export")
            path, cached = cache.artifact(filename, makers[name])
            out.paths[name] = path
            out.sizes.append({"artifact": name, "bytes": artifact_bytes(path), "framework": framework})
            out.rows.append({"artifact": name, "framework": framework, "status": "ok", "cached": cached,
                             "seconds": time.perf_counter() - started})
        except Exception as err:  # noqa: BLE001 - a failing export is recorded, the others still run
            message = f"export {name}: {type(err).__name__}: {err}"
            out.errors.append(message)
            out.tracebacks.append(traceback.format_exc(limit=6))
            out.rows.append({"artifact": name, "framework": framework, "status": "failed", "error": message})
    return out
