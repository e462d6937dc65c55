"""The classification task's harness plug-in: no studies or claims of its own (its seed answers' claims,
13 and 30 and quantization's 11 and 28, are the generic ones of compare.claims), no post-processing step,
and the reference workloads: the ports of torchvision's ResNet-18 and ResNet-50 that its twins build
(compare.workloads times them through every backend)."""

from __future__ import annotations

import json

from shared.specs import get_spec
from shared.specs.classification import resnet18, resnet50
from shared.weights import write_atomic

from . import TaskPlugin

REFERENCE = "torch"  # the framework whose trained model every backend (and every task built on it) uses


def trained_model(preset: str, cache_of, printer=print):
    """The classification run's trained reference model at ``preset`` and its weight file: read from that run's
    cache folder (``cache_of("classification")``), or trained now and stored there as its train stage stores it
    (weights and history), so that the run reuses it. For tasks built on this model (a distillation teacher, a
    transfer-learning source)."""
    from ..frameworks import load_twin

    spec, twin = get_spec("classification", preset), load_twin(REFERENCE, "classification")
    cache = cache_of("classification")
    path = cache.path(f"trained-{REFERENCE}.safetensors")
    if path.exists():
        printer(f"    the classification run's trained {REFERENCE} model: cached")
        return twin.bridge.load_weights(twin.task.build_model(spec), path), path
    printer(f"    training the classification model with {REFERENCE} (its own run will reuse it)")
    model, history = twin.task.train(spec, progress=False)
    twin.bridge.save_weights(model, path, {"task": "classification", "preset": preset, "device": "cpu"})
    write_atomic(cache.path(f"trained-{REFERENCE}.history.json"), json.dumps(history))
    return model, path


PLUGIN = TaskPlugin(workloads={"resnet18": resnet18, "resnet50": resnet50})

__all__ = ["PLUGIN", "REFERENCE", "trained_model"]
