"""Task metrics from predictions as numpy arrays, framework-free.

Each task has a module here, ``shared.metrics.<task>``, that declares ``PRIMARY_METRIC`` (the one number
quantization and compression tables compare), ``evaluate(spec, outputs, split, postprocess)`` and
``agreement(a, b, spec)`` (how often two backends' outputs decide the same, or None where the task has no such
single decision). The functions below dispatch to it: a task plugs in by adding its module.
"""

from __future__ import annotations

from typing import Callable

from .. import task_module


def metrics_module(task: str):
    """The metrics module of ``task`` (``shared.metrics.<task>``; a study-only task's are those of the task it
    studies); a clear error for a task without one."""
    from ..specs import TASKS

    entry = TASKS.get(task)
    return task_module(__name__, entry.studies_on or task if entry else task, "PRIMARY_METRIC, evaluate and agreement")


def primary_metric(task: str) -> str:
    return metrics_module(task).PRIMARY_METRIC


def evaluate_outputs(spec, outputs: dict, split, postprocess: Callable | None = None) -> dict:
    """The task metrics of model ``outputs`` (numpy, NHWC) on ``split``: any task, any backend.

    postprocess: for tasks whose raw outputs need decoding before they can be
    scored (a detector's box decoding and NMS), the twin's ``postprocess(outputs,
    spec)``; the caller picks the framework, so a TF export is scored through
    TF's post-processing and a torch export through torch's.
    """
    return metrics_module(spec.task).evaluate(spec, outputs, split, postprocess)


def agreement(a: dict, b: dict, spec) -> float | None:
    """The share of inputs on which outputs ``a`` and ``b`` decide the same (top-1 for a classifier; None for
    a task with no single decision per input)."""
    return metrics_module(spec.task).agreement(a, b, spec)


__all__ = ["agreement", "evaluate_outputs", "metrics_module", "primary_metric"]
