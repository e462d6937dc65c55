"""Task metrics from predictions as numpy arrays, framework-free.

Each task has a module here, ``shared.metrics.<task>``, that declares ``PRIMARY_METRIC`` (the one number
quantization and compression tables compare), ``evaluate(spec, outputs, split, postprocess)`` and
``agreement(a, b, spec)`` (how often two backends' outputs decide the same, or None where the task has no such
single decision). The functions below dispatch to it: a task plugs in by adding its module.
"""

from __future__ import annotations

import importlib
from typing import Callable

from .classification import classification_metrics
from .detection import coco_metrics


def metrics_module(task: str):
    """The metrics module of ``task`` (``shared.metrics.<task>``); a clear error for a task without one."""
    try:
        return importlib.import_module(f"{__name__}.{task}")
    except ModuleNotFoundError as err:
        if err.name != f"{__name__}.{task}":
            raise
        raise ValueError(f"no metrics for task {task!r} (expected shared/metrics/{task}.py with PRIMARY_METRIC, "
                         f"evaluate and agreement)") from None


def primary_metric(task: str) -> str:
    return metrics_module(task).PRIMARY_METRIC


def evaluate_outputs(spec, outputs: dict, split, postprocess: Callable | None = None) -> dict:
    """The task metrics of model ``outputs`` (numpy, NHWC) on ``split``: any task, any backend.

    postprocess: for tasks whose raw outputs need decoding before they can be
    scored (detection: box decoding and NMS), the twin's ``postprocess(outputs,
    spec)``; the caller picks the framework, so a TF export is scored through
    TF's post-processing and a torch export through torch's.
    """
    return metrics_module(spec.task).evaluate(spec, outputs, split, postprocess)


def agreement(a: dict, b: dict, spec) -> float | None:
    """The share of inputs on which outputs ``a`` and ``b`` decide the same (top-1 for a classifier; None for
    a task with no single decision per input)."""
    return metrics_module(spec.task).agreement(a, b, spec)


__all__ = ["agreement", "classification_metrics", "coco_metrics", "evaluate_outputs", "metrics_module",
           "primary_metric"]
