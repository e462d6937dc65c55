"""The fp32 artifacts of a pair of twins that hold the same weights, made once and cached.

Used by a task's run and by the reference workloads: safetensors, torch's
ExportedProgram (.pt2) and ONNX, TensorFlow's SavedModel, ONNX, .keras and
TFLite. Each artifact is recorded as ok (with its size and time), skipped
(with the reason) or failed (with the error); a failure leaves the others.
"""

from __future__ import annotations

import time
import traceback
import types
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


def _makers(twins, models: dict, spec, paths: dict[str, Path], graphs: dict, graph_spec) -> dict[str, Callable]:
    """graphs: per framework, what its exported graphs hold (the model, or its twin's export view); graph_spec:
    the input shape and output keys of those graphs."""
    torch_twin, tf_twin = twins["torch"], twins["tensorflow"]
    return {
        "safetensors": lambda p: torch_twin.bridge.save_weights(models["torch"], p),
        "pt2": lambda p: torch_twin.export.export_program(graphs["torch"], graph_spec, p),
        "onnx-from-torch": lambda p: torch_twin.export.export_onnx(graphs["torch"], graph_spec, p),
        "onnx-from-tensorflow": lambda p: tf_twin.export.export_onnx(graphs["tensorflow"], graph_spec, p),
        "saved_model": lambda p: tf_twin.export.export_program(graphs["tensorflow"], graph_spec, p),
        "keras": lambda p: tf_twin.export.save_keras(models["tensorflow"], p),
        "tflite-fp32": lambda p: tf_twin.export.export_tflite(paths["saved_model"], p),
    }


# Artifacts that hold the whole model whatever it is (weights, the Keras model's own file); the others are graphs.
WHOLE_MODEL = ("safetensors", "keras")


def export_views(twins, models: dict, spec) -> tuple[dict, Any]:
    """What each framework's graphs hold, and their shape and keys: the models themselves, or, for a model that
    does not export whole (``spec.export_limit``), its twin's ``export_view`` (the two-stage detectors' backbone
    and RPN, whose outputs the framework then finishes: the twin's ``finish_export``)."""
    graphs, keys = dict(models), tuple(spec.output_keys)
    if getattr(spec, "export_limit", None):
        for fw, model in models.items():
            graphs[fw], keys = twins[fw].task.export_view(model, spec)
    return graphs, types.SimpleNamespace(input_shape=tuple(spec.input_shape), output_keys=tuple(keys))


def export_all(twins, models: dict, spec, cache, only: tuple[str, ...] | None = None) -> Exported:
    """Every artifact of ``ARTIFACTS`` (or those in ``only``) from ``models`` ({framework: model}), through
    ``cache`` (a ``TaskCache``). For a model that does not export whole (``spec.export_limit``) the graphs hold its
    export view (``export_views``), and their rows say so (``part``)."""
    out = Exported()
    graphs, graph_spec = export_views(twins, models, spec)
    limit = getattr(spec, "export_limit", None)
    makers = _makers(twins, models, spec, out.paths, graphs, graph_spec)
    for name, framework, filename in ARTIFACTS:
        if only is not None and name not in only:
            continue
        started = time.perf_counter()
        part = {"part": f"{', '.join(graph_spec.output_keys)}: {limit}"} if limit and name not in WHOLE_MODEL else {}
        try:
            if framework not in models:
                raise RuntimeError(f"no {framework} model to export")
            path, cached = cache.artifact(filename, makers[name])
            out.paths[name] = path
            out.sizes.append({"artifact": name, "bytes": artifact_bytes(path), "framework": framework})
            out.rows.append({"artifact": name, "framework": framework, "status": "ok", "cached": cached,
                             "seconds": time.perf_counter() - started, **part})
        except Exception as err:  # noqa: BLE001 - a failing export is recorded, the others still run
            message = f"export {name}: {type(err).__name__}: {err}"
            out.errors.append(message)
            out.tracebacks.append(traceback.format_exc(limit=6))
            out.rows.append({"artifact": name, "framework": framework, "status": "failed", "error": message, **part})
    return out
