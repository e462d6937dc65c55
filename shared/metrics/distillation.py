"""Distillation metrics: the student is a classifier (accuracy through scikit-learn, as the classification
task's), plus how often it decides as its teacher does."""

from __future__ import annotations

import numpy as np

from .classification import agreement, classification_metrics

PRIMARY_METRIC = "accuracy"


def evaluate(spec, outputs: dict, split, postprocess=None) -> dict:
    """The task's metrics hook (``shared.metrics.evaluate_outputs``): the classification metrics and, where the
    split carries its teacher's logits, ``teacher_agreement`` (the share of images with the teacher's top-1)."""
    logits = np.asarray(outputs["logits"])
    metrics = classification_metrics(logits, split.labels, spec.model.num_classes)
    if getattr(split, "teacher_logits", None) is not None:
        metrics["teacher_agreement"] = float((logits.argmax(-1) == split.teacher_logits.argmax(-1)).mean())
    return metrics


__all__ = ["PRIMARY_METRIC", "agreement", "evaluate"]
