"""Accuracy and per-class recall, through scikit-learn."""

from __future__ import annotations

import numpy as np


def classification_metrics(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
    """accuracy, balanced_accuracy and per_class_recall (a list, one value per class)."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, recall_score

    pred = np.asarray(logits).argmax(axis=-1)
    labels = np.asarray(labels)
    recall = recall_score(labels, pred, labels=list(range(num_classes)), average=None, zero_division=0.0)
    return {
        "accuracy": float(accuracy_score(labels, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(labels, pred)),
        "per_class_recall": [float(r) for r in recall],
    }


PRIMARY_METRIC = "accuracy"


def evaluate(spec, outputs: dict, split, postprocess=None) -> dict:
    """The task's metrics hook (``shared.metrics.evaluate_outputs``): logits need no post-processing."""
    return classification_metrics(outputs["logits"], split.labels, spec.model.num_classes)


def agreement(a: dict, b: dict, spec) -> float:
    """Top-1 agreement of two backends' logits."""
    return float((np.asarray(a["logits"]).argmax(-1) == np.asarray(b["logits"]).argmax(-1)).mean())
