"""The stages of one run through the harness, each a module with one job.

``compare.pipeline.TaskRun`` calls them in order and hands each what it needs explicitly; a stage
returns what later stages use and writes its figures into the run's results dict (the schema of
docs/ARCHITECTURE.md). Where a number in the report comes from:

=====================  ================================================  ===============================
stage                  results keys                                      module
=====================  ================================================  ===============================
train                  ``quality[torch|tensorflow]``, ``training``       ``compare.stages.train``
parity levels          ``parity`` (forward, gradients, training, onnx)   ``compare.stages.parity``
export                 ``exports``, ``size``                             ``compare.stages.export``
fp32 backends          ``backends``, ``quality[backend]``, ``parity``     ``compare.stages.fp32``
                       (backends/..., backends/served/...)
quantization           ``backends`` (quantized), ``size``, ``int8``,     ``compare.stages.quantize``
                       ``quantization``
compression            ``compression``                                   ``compare.stages.compression``
speed                  ``speed``, ``flops_per_image``                    ``compare.stages.speed``
studies                ``studies``                                       ``compare.stages.studies``
=====================  ================================================  ===============================

Every stage records a failure with its error and lets the run go on (``RunContext.fail``).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.metrics import evaluate_outputs

from ..cache import TaskCache
from ..progress import Progress

REFERENCE = "torch"  # whose trained weights every backend runs


@dataclass
class RunContext:
    """What every stage of one run reads, and the results dict they all write.

    name: the run's key in the report (``task`` or ``task.variant``); preset, budget, batches: the
    profile's model preset, timing budget and timed batch sizes; twins: both frameworks' twins
    (compare.frameworks); result: the run's entry of results.json, filled stage by stage.
    """

    task: str
    variant: str | None
    name: str
    profile: str
    preset: str
    budget: Any
    batches: tuple[int, ...]
    spec: Any
    threads: int
    cache_root: Path
    cache: TaskCache
    twins: dict
    progress: Progress
    result: dict
    device: str = "cpu"  # where each framework trains its model; exports and inference backends run on the CPU

    def step(self, kind: str, what: str) -> None:
        """Start the next step of this run on the progress line (and its clock)."""
        self.progress.step(self.name, kind, what)

    def fail(self, what: str, err: BaseException) -> str:
        """Record ``err`` (message and a short traceback) as a failure of ``what``; returns the message."""
        message = f"{what}: {type(err).__name__}: {err}"
        self.result["errors"].append(message)
        self.result.setdefault("tracebacks", []).append(traceback.format_exc(limit=6))
        return message

    def evaluate(self, outputs: dict, split, framework: str) -> dict:
        """Task metrics of a backend's raw outputs, post-processed (where the task has that step) by the twin
        of the framework the backend came from: a TF export is scored the way TF would serve it."""
        postprocess = getattr(self.twins[framework].task, "postprocess", None)
        return evaluate_outputs(self.spec, outputs, split, postprocess)

    def backend_row(self, name: str) -> dict:
        return next(row for row in self.result["backends"] if row["name"] == name)

    def mark_failed(self, name: str, err: BaseException) -> None:
        self.backend_row(name).update(status="failed", error=f"{type(err).__name__}: {err}")


def scalars(metrics: dict) -> dict:
    """The single-number metrics of a metrics dict (per-class lists stay out of the tables)."""
    return {k: v for k, v in metrics.items() if not isinstance(v, list)}


__all__ = ["REFERENCE", "RunContext", "scalars"]
