"""Reference workloads: torchvision's ResNet-18 and ResNet-50 at 224 x 224 through every backend.

A task's own model can be tiny (the report's classifier costs about 1 MFLOP an
image), and timing it then measures each runtime's per-call overhead more than
its convolutions. Users choose a framework for networks of ResNet size, so the
speed section also times the ports of torchvision's ResNets that both twins
load (seeded random weights with non-trivial BatchNorm statistics: speed does
not depend on the values) through every fp32 backend and the int8 ones, at
batch 1 and 16, against the measured matmul rate. Each fp32 backend's logits
are compared with eager PyTorch's before it is timed, so a fast wrong graph is
never reported as fast. Artifacts are cached like a task's.
"""

from __future__ import annotations

import dataclasses
import sys
import traceback
from pathlib import Path
from typing import Callable

import numpy as np

from shared import weights as W
from shared.cpu import int8_setting
from shared.data.textures import photo_batch
from shared.specs import RUNNABLE, TASKS

from . import backends as B
from . import quantization
from . import speed as S
from .cache import TaskCache, recipe_name
from .exports import export_all
from .parity import entry
from .progress import Step

# The quick profile times the tasks' own models only: compiling and converting two ResNets for every
# backend takes minutes, more than that profile's whole budget.
PROFILES_WITH_WORKLOADS = ("standard",)
BATCHES = (1, 16)
IMAGE_SIZE = 224
INT8_BACKENDS = ("torch-int8", "onnxruntime-int8", "tflite-int8")
CALIBRATION_IMAGES = 8
SEED = 0
# Only the artifacts a timed backend needs (no .pt2, .keras: they are sizes, already shown per task).
_ARTIFACTS = ("safetensors", "onnx-from-torch", "onnx-from-tensorflow", "saved_model", "tflite-fp32")


def workloads() -> dict[str, tuple[str, Callable]]:
    """Every reference workload, ``{name: (task whose twins build it, spec builder)}``: those the runnable
    tasks' plug-ins declare (``TaskPlugin.workloads``; the classification twins' ResNet ports)."""
    from .tasks import plugin

    return {name: (task, build) for task, e in TASKS.items() if e.status in RUNNABLE
            for name, build in plugin(task).workloads.items()}


def profile_workloads(profile: str) -> tuple[str, ...]:
    """The workloads a report of ``profile`` times: all of them in the standard profile, none in the quick one."""
    return tuple(workloads()) if profile in PROFILES_WITH_WORKLOADS else ()


def run_name(workload: str) -> str:
    return f"workload.{workload}"


def _speed_step(backend: str, batches: tuple[int, ...]) -> str:
    return f"{backend}: speed at batch {', '.join(map(str, batches))}"


def planned_steps(workload: str, backends: tuple[str, ...] = B.BACKENDS + INT8_BACKENDS,
                  batches: tuple[int, ...] = BATCHES) -> list[Step]:
    """The progress steps of one workload, as ``run_workload`` names them."""
    name = run_name(workload)
    steps = [Step(name, "export", "models and exports")]
    if any(b in INT8_BACKENDS for b in backends):
        steps.append(Step(name, "quantize", "int8 variants"))
    return steps + [Step(name, "speed", _speed_step(b, batches)) for b in backends]


def _builder(workload: str) -> tuple[str, Callable]:
    known = workloads()
    if workload not in known:
        raise ValueError(f"unknown workload {workload!r}; expected one of {sorted(known)}")
    return known[workload]


def workload_cache(cache_root: str | Path, workload: str, image_size: int = IMAGE_SIZE) -> TaskCache:
    """The cache folder of a workload's exports (its spec and the model code are the key, as a task's)."""
    return TaskCache(cache_root, run_name(workload), f"{image_size}px", _builder(workload)[1](image_size=image_size))


def _models(twins, spec) -> dict:
    """Both twins holding one seeded torchvision-style initialisation, BatchNorm statistics made non-trivial."""
    import torch

    torch.manual_seed(SEED)
    tensors = W.randomize_batchnorm(twins["torch"].bridge.export_weights(twins["torch"].task.build_model(spec)), SEED)
    return {fw: twin.bridge.import_weights(twin.task.build_model(spec), tensors) for fw, twin in twins.items()}


def _int8_runner(name: str, models: dict, artifacts: dict, spec, cache: TaskCache, calibration, threads: int):
    from pytorch_impl import quantize as PQ
    from tensorflow_impl import quantize as TQ

    int8, keys = int8_setting(), tuple(spec.output_keys)

    def recipe(filename: str) -> str:  # the calibration and this code name the file (compare.cache.recipe_name)
        made_with = {"calibration": len(calibration), "int8": dataclasses.asdict(int8)}
        return recipe_name(filename, made_with, sys.modules[__name__], quantization)

    if name == "torch-int8":
        return B.pt2e_int8_runner(name, PQ.quantize_static(models["torch"], spec, calibration, int8), keys,
                                  spec.input_shape)
    if name == "onnxruntime-int8":
        path, _ = cache.artifact(recipe("model-torch-int8.onnx"), lambda p: quantization.onnx_static_int8(
            artifacts["onnx-from-torch"], p, calibration, spec, int8=int8))
        return B.onnx_runner(name, path, threads)
    if name == "tflite-int8":
        path, _ = cache.artifact(recipe("model-int8.tflite"), lambda p: TQ.to_tflite(
            artifacts["saved_model"], p, "int8", calibration, spec))
        return B.tflite_runner(name, path, threads, keys)
    raise ValueError(f"unknown int8 backend {name!r}; expected one of {list(INT8_BACKENDS)}")


def run_workload(workload: str, cache_root: str | Path, threads: int, budget: S.TimingBudget, progress,
                 image_size: int = IMAGE_SIZE, batches: tuple[int, ...] = BATCHES,
                 backends: tuple[str, ...] = B.BACKENDS + INT8_BACKENDS) -> dict:
    """Time ``workload`` (a key of ``workloads()``) through ``backends``; the ``workloads`` entry of results.json.

    Returns model, image_size, flops_per_image, params, backends (status rows), speed (rows as a task's, with
    gflops), parity (each fp32 backend against eager torch at batch 1), size and errors.
    """
    from .frameworks import load_twins

    name = run_name(workload)
    task, build = _builder(workload)
    spec = build(image_size=image_size)
    result = {"model": workload, "image_size": image_size, "batches": list(batches), "backends": [], "speed": [],
              "parity": [], "size": [], "errors": [], "int8": dataclasses.asdict(int8_setting())}

    def fail(what: str, err: BaseException) -> str:
        message = f"{what}: {type(err).__name__}: {err}"
        result["errors"].append(message)
        result.setdefault("tracebacks", []).append(traceback.format_exc(limit=6))
        return message

    progress.step(name, "export", "models and exports")
    twins = load_twins(task)
    models = _models(twins, spec)
    result["params"] = int(sum(np.prod(v.shape) for k, v in twins["torch"].bridge.export_weights(
        models["torch"]).items() if not k.endswith(("running_mean", "running_var"))))
    result["flops_per_image"] = S.model_flops(models["torch"], spec)
    cache = workload_cache(cache_root, workload, image_size)
    exported = export_all(twins, models, spec, cache, only=_ARTIFACTS)
    result["size"] = exported.sizes
    result["errors"] += exported.errors
    images = photo_batch(max(max(batches), CALIBRATION_IMAGES), image_size)
    expected = B.make_runner("torch", models, exported.paths, spec, threads)(images[:1])

    runners = {}
    if any(b in INT8_BACKENDS for b in backends):
        progress.step(name, "quantize", "int8 variants")
    for backend in backends:
        try:
            if backend in INT8_BACKENDS:
                runners[backend] = _int8_runner(backend, models, exported.paths, spec, cache,
                                                images[:CALIBRATION_IMAGES], threads)
            else:
                runners[backend] = B.make_runner(backend, models, exported.paths, spec, threads)
                got = runners[backend](images[:1])
                for key in spec.output_keys:
                    result["parity"].append(entry("torch", backend, f"workload/{key}", expected[key], got[key],
                                                  spec.tolerances.forward))
            result["backends"].append({"name": backend, "status": "ok", "quantized": backend in INT8_BACKENDS})
        except Exception as err:  # noqa: BLE001 - a backend that fails is recorded, the others still run
            result["backends"].append({"name": backend, "status": "failed", "quantized": backend in INT8_BACKENDS,
                                       "error": fail(f"backend {backend}", err)})

    for backend, runner in runners.items():
        progress.step(name, "speed", _speed_step(backend, batches))
        for batch in batches:
            try:
                timing = S.time_call(runner.run, runner.to_input(np.ascontiguousarray(images[:batch])), budget)
                gflops = result["flops_per_image"] * batch / (timing["p50_ms"] / 1e3) / 1e9
                result["speed"].append({"backend": backend, "batch": batch, **timing, "gflops": gflops})
            except Exception as err:  # noqa: BLE001
                fail(f"speed {backend} batch {batch}", err)
                next(r for r in result["backends"] if r["name"] == backend).update(
                    status="failed", error=f"{type(err).__name__}: {err}")
    return result
