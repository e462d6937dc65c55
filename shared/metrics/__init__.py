"""Task metrics from predictions as numpy arrays, framework-free."""

from __future__ import annotations

from .classification import classification_metrics
from .detection import coco_metrics


def evaluate_outputs(spec, outputs: dict, split) -> dict:
    """The task metrics of model ``outputs`` (numpy, NHWC) on ``split``: any task, any backend."""
    if spec.task == "classification":
        return classification_metrics(outputs["logits"], split.labels, spec.model.num_classes)
    raise ValueError(f"no metrics for task {spec.task!r}; expected one of ['classification']")


__all__ = ["classification_metrics", "coco_metrics", "evaluate_outputs"]
