"""Task metrics from predictions as numpy arrays, framework-free."""

from .classification import classification_metrics

__all__ = ["classification_metrics"]
