"""Task metrics from predictions as numpy arrays, framework-free."""

from __future__ import annotations

from typing import Callable

from .classification import classification_metrics
from .detection import coco_metrics

TASK_METRICS = ("classification", "detection")
# The one number per task that quantization and compression tables compare (fp32 vs variant).
PRIMARY_METRIC = {"classification": "accuracy", "detection": "map50"}


def evaluate_outputs(spec, outputs: dict, split, postprocess: Callable | None = None) -> dict:
    """The task metrics of model ``outputs`` (numpy, NHWC) on ``split``: any task, any backend.

    postprocess: for tasks whose raw outputs need decoding before they can be
    scored (detection: box decoding and NMS), the twin's ``postprocess(outputs,
    spec)``; the caller picks the framework, so a TF export is scored through
    TF's post-processing and a torch export through torch's.
    """
    if spec.task == "classification":
        return classification_metrics(outputs["logits"], split.labels, spec.model.num_classes)
    if spec.task == "detection":
        if postprocess is None:
            raise ValueError("detection outputs are raw head outputs: evaluate_outputs needs the twin's postprocess")
        return coco_metrics(postprocess(outputs, spec), split)
    raise ValueError(f"no metrics for task {spec.task!r}; expected one of {list(TASK_METRICS)}")


__all__ = ["PRIMARY_METRIC", "TASK_METRICS", "classification_metrics", "coco_metrics", "evaluate_outputs"]
