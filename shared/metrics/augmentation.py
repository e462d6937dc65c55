"""Augmentation metrics: the model is a classifier (accuracy through scikit-learn)."""

from __future__ import annotations

from .classification import PRIMARY_METRIC, agreement, evaluate

__all__ = ["PRIMARY_METRIC", "agreement", "evaluate"]
