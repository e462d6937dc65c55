"""Stage ``quantization`` (seed answers 11 and 28): every int8 / fp16 variant of the reference weights as a
runner (TFLite fp16, dynamic, int8 and QAT; torch pt2e static and QAT lowered to oneDNN's int8 kernels,
torch dynamic; ONNX Runtime static int8 of both exports and of the pt2e graph), its quality and agreement
with the fp32 reference, and one summary row per variant against its fp32 source."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from shared.cpu import int8_setting
from shared.metrics import agreement, primary_metric

from .. import backends as B
from .. import quantization
from ..cache import recipe_name
from ..quantization import u8s8_headroom
from ..size import artifact_bytes
from . import REFERENCE, RunContext, scalars

QUANTIZE_STEP = "quantize: TFLite fp16 / dynamic / int8, QAT, torch pt2e int8, ORT int8"
# Quantization-aware fine-tuning and pruning / clustering fine-tune steps, the sparsities tried and the
# calibration images. Clustering fine-tunes with Adam at cluster_lr (tensorflow_impl/quantize.py says why).
COMPRESSION = {"quick": {"steps": 8, "sparsities": (0.5,), "clusters": 16, "cluster_lr": 1e-4, "calibration": 64},
               "standard": {"steps": 40, "sparsities": (0.5, 0.8), "clusters": 16, "cluster_lr": 1e-4,
                            "calibration": 256}}


def quantize(ctx: RunContext, reference: dict, artifacts: dict[str, Path], data) -> dict[str, B.Runner]:
    """``{variant: runner}``; artifacts cached, a ``backends`` row per variant (ok, skipped for a declared
    limit of the toolkit, or failed with its error), ``size`` rows and the host's ``int8`` setting."""
    ctx.step("quantize", QUANTIZE_STEP)
    from pytorch_impl import quantize as PQ
    from pytorch_impl.export import export_onnx
    from tensorflow_impl import quantize as TQ

    from ..exports import export_views

    cfg, spec = COMPRESSION[ctx.profile], ctx.spec
    # The graphs quantized: the models, or, for a model that does not export whole (spec.export_limit), their export
    # views, whose runners the source framework's fp32 model then finishes (backends.finishing_runner).
    graphs, graph_spec = export_views(ctx.twins, reference, spec)
    keys, limit = graph_spec.output_keys, getattr(spec, "export_limit", None)

    def served(framework: str, runner: B.Runner) -> B.Runner:
        return B.finishing_runner(runner, reference[framework], spec) if limit else runner

    calibration = data.train.images[:cfg["calibration"]]
    # The weight range for this CPU's integer kernels (7-bit without VNNI; shared.cpu says why). TFLite's int8
    # kernels (XNNPACK) widen to 16 bits before multiplying and need no such setting.
    int8 = int8_setting()
    ctx.result["int8"] = dataclasses.asdict(int8)
    tensors = ctx.twins["torch"].bridge.export_weights(reference["torch"])
    lr = spec.train.lr * 0.02  # fine-tuning a trained model: a small step
    pt2e: dict = {}  # the static pt2e int8 model, once made: exported to ONNX (QDQ) as onnxruntime-torch-int8
    # What the calibrated and fine-tuned files are made with beyond the spec and the model code the cache key
    # covers: these settings and this stage's code name the files, so a change recalibrates instead of serving a
    # file made the old way.
    made_with = {"calibration": len(calibration), "steps": cfg["steps"], "lr": lr, "int8": ctx.result["int8"]}

    def recipe(filename: str) -> str:
        return recipe_name(filename, made_with, sys.modules[__name__], quantization)

    def artifact(name: str, filename: str, make) -> Path:
        path, _ = ctx.cache.artifact(filename, make)
        row = {"artifact": name, "bytes": artifact_bytes(path), "framework": B.QUANTIZED[name][0], "quantized": True}
        if path.suffix == ".onnx":  # can this file saturate a CPU without VNNI? (measured on its weights)
            row["u8s8"] = u8s8_headroom(path)
        ctx.result["size"].append(row)
        return path

    def tflite(name, filename, make):
        return served("tensorflow", B.tflite_runner(name, artifact(name, filename, make), ctx.threads, keys))

    def onnx(name, filename, make):
        return served(B.QUANTIZED[name][0], B.onnx_runner(name, artifact(name, filename, make), ctx.threads))

    def torch_int8(name: str, module) -> B.Runner:
        if name == "torch-int8":
            pt2e["model"] = module
        path = PQ.save_int8(module, spec, ctx.cache.path(f"{name}.safetensors"))
        ctx.result["size"].append({"artifact": name, "bytes": artifact_bytes(path), "framework": "torch",
                                   "quantized": True, "note": "int8 tensors of the pt2e model (safetensors)"})
        return served("torch", B.pt2e_int8_runner(name, module, keys, spec.input_shape))

    def pt2e_model():
        if "model" not in pt2e:
            raise RuntimeError("no torch pt2e int8 model to export: the torch-int8 variant failed (see its error)")
        return pt2e["model"]

    plan = {
        "tflite-fp16": lambda: tflite("tflite-fp16", "model-fp16.tflite", lambda p: TQ.to_tflite(
            artifacts["saved_model"], p, "fp16")),
        "tflite-dynamic": lambda: tflite("tflite-dynamic", "model-dynamic.tflite", lambda p: TQ.to_tflite(
            artifacts["saved_model"], p, "dynamic")),
        "tflite-int8": lambda: tflite("tflite-int8", recipe("model-int8.tflite"), lambda p: TQ.to_tflite(
            artifacts["saved_model"], p, "int8", calibration, spec)),
        "tflite-int8-qat": lambda: tflite("tflite-int8-qat", recipe("model-int8-qat.tflite"),
                                          lambda p: TQ.quantize_qat(tensors, spec, data.train, cfg["steps"], lr, p)),
        "torch-int8": lambda: torch_int8("torch-int8", PQ.quantize_static(graphs["torch"], spec, calibration, int8)),
        "torch-int8-qat": lambda: torch_int8("torch-int8-qat", PQ.quantize_qat(reference["torch"], spec, data.train,
                                                                               cfg["steps"], lr, int8)),
        # The eager model's own dense layers: always the whole model, whatever its graphs hold.
        "torch-int8-dynamic": lambda: B.module_runner("torch-int8-dynamic", PQ.quantize_dynamic(reference["torch"]),
                                                      tuple(spec.output_keys), spec.input_shape),
        "onnxruntime-torch-int8": lambda: onnx("onnxruntime-torch-int8", recipe("model-torch-pt2e-int8.onnx"),
                                               lambda p: export_onnx(pt2e_model(), graph_spec, p)),
        "onnxruntime-int8": lambda: onnx("onnxruntime-int8", recipe("model-torch-int8.onnx"),
                                         lambda p: quantization.onnx_static_int8(artifacts["onnx-from-torch"], p,
                                                                                 calibration, spec, int8=int8)),
        "onnxruntime-int8-from-tensorflow": lambda: onnx(
            "onnxruntime-int8-from-tensorflow", recipe("model-tensorflow-int8.onnx"),
            lambda p: quantization.onnx_static_int8(artifacts["onnx-from-tensorflow"], p, calibration, spec,
                                                    int8=int8)),
    }
    made = {}
    for name, make in plan.items():
        framework, source = B.QUANTIZED[name]
        row = {"name": name, "source": framework, "quantized": True, "fp32_backend": source}
        if limit and name in B.WHOLE_GRAPH_QUANTIZED:
            ctx.result["backends"].append({**row, "status": "skipped", "reason": f"trains the whole model through "
                                           f"its exported graph, and {limit}"})
            continue
        if limit and name != "torch-int8-dynamic":  # a graph of the export view, finished by the framework
            row["part"] = f"int8 {', '.join(keys)}; the rest in the framework at fp32"
        try:
            made[name] = make()
            ctx.result["backends"].append({**row, "status": "ok"})
        except TQ.UnsupportedOpError as err:
            # A declared limit of the toolkit (tfmot takes only models with a tf_keras functional twin).
            ctx.result["backends"].append({**row, "status": "skipped", "reason": f"UnsupportedOpError: {err}"})
        except Exception as err:  # noqa: BLE001 - one variant failing leaves the others
            ctx.result["backends"].append({**row, "status": "failed", "error": ctx.fail(f"quantize {name}", err)})
    return made


def quantized_quality(ctx: RunContext, quantized: dict[str, B.Runner], runners: dict[str, B.Runner], data) -> None:
    """Task metrics of each variant and, where the task has one decision per input (a classifier's top-1),
    its agreement with the fp32 reference (L6). A variant that fails here is dropped from ``quantized``."""
    reference = runners.get(REFERENCE)
    ref_outputs = reference.predict(data.test.images) if reference else None
    for name, runner in list(quantized.items()):
        ctx.step("quality", f"{name}: quality")
        try:
            full = runner.predict(data.test.images, batch=32)
            metrics = scalars(ctx.evaluate(full, data.test, B.QUANTIZED[name][0]))
            agreed = agreement(full, ref_outputs, ctx.spec) if ref_outputs is not None else None
            if agreed is not None:
                metrics["top1_agreement"] = agreed
            ctx.backend_row(name)["quality"] = metrics
            ctx.result["quality"][name] = metrics
        except Exception as err:  # noqa: BLE001
            ctx.fail(f"backend {name} run", err)
            ctx.mark_failed(name, err)
            del quantized[name]


def summary(ctx: RunContext) -> None:
    """``quantization``: per variant, quality drop, agreement, size and speed against its fp32 source (L6)."""
    result = ctx.result
    metric = primary_metric(ctx.spec.task)
    sizes = {r["artifact"]: r["bytes"] for r in result["size"]}
    fp32_bytes = {"tflite-fp32": sizes.get("tflite-fp32"), "onnxruntime-from-torch": sizes.get("onnx-from-torch"),
                  "onnxruntime-from-tensorflow": sizes.get("onnx-from-tensorflow"),
                  "torch-compile": sizes.get("safetensors"), "torch": sizes.get("safetensors")}
    speed = {(r["backend"], r["batch"]): r["p50_ms"] for r in result["speed"]}
    rows = []
    for b in result["backends"]:
        if not b.get("quantized") or b["status"] != "ok" or "quality" not in b:
            continue
        source = b["fp32_backend"]
        fp32_quality = next((r.get("quality", {}) for r in result["backends"] if r["name"] == source), {})
        row = {"variant": b["name"], "framework": b["source"], "fp32_backend": source,
               "metric": metric, "quality": b["quality"].get(metric), "fp32_quality": fp32_quality.get(metric),
               "top1_agreement": b["quality"].get("top1_agreement"), "bytes": sizes.get(b["name"]),
               "fp32_bytes": fp32_bytes.get(source)}
        row["size_ratio"] = row["bytes"] / row["fp32_bytes"] if row["bytes"] and row["fp32_bytes"] else None
        for batch in ctx.batches:
            q, f = speed.get((b["name"], batch)), speed.get((source, batch))
            row[f"p50_ms_b{batch}"] = q
            row[f"speedup_b{batch}"] = f / q if q and f else None
        rows.append(row)
    result["quantization"] = rows


__all__ = ["COMPRESSION", "QUANTIZE_STEP", "quantize", "quantized_quality", "summary"]
