"""Training and evaluation of the classification twin (TensorFlow / Keras ``fit``)."""

from __future__ import annotations

import keras
import numpy as np

from shared.data import check_images, check_labels
from shared.data.classification import ClassificationData, Split, load_classification
from shared.metrics.classification import classification_metrics
from shared.specs.base import TrainSpec
from shared.specs.classification import ClassificationSpec

from ..tensors import resolve_device
from ..training import Trainer, fit_spec
from .loss import compute_loss
from .model import ResNet, build_model, predict


def evaluate(model: ResNet, split: Split, spec: ClassificationSpec, device: str = "cpu") -> dict:
    """accuracy, balanced_accuracy and per_class_recall on ``split``."""
    logits = predict(model, split.images, device=device)["logits"]
    return classification_metrics(logits, split.labels, spec.model.num_classes)


def train(spec: ClassificationSpec, data: ClassificationData | None = None, *, model: ResNet | None = None,
          device: str = "cpu", progress: bool = True) -> tuple[ResNet, list[dict]]:
    """Train on ``data`` (loaded from the spec if None); returns the model and per-epoch history."""
    spec.check_data_matches()
    data = data or load_classification(spec.data)
    resolve_device(device)
    if model is None:
        keras.utils.set_random_seed(spec.train.seed)
        model = build_model(spec)
    images = check_images(data.train.images, channels=spec.model.in_channels)
    labels = check_labels(data.train.labels, num_classes=spec.model.num_classes, n=len(data.train))
    history = fit_spec(model, spec, compute_loss, images, labels,
                       evaluate=lambda: evaluate(model, data.test, spec, device), progress=progress, device=device)
    return model, history


def train_steps(model: ResNet, spec: ClassificationSpec, images: np.ndarray, labels: np.ndarray,
                batches: list[np.ndarray], train: TrainSpec) -> list[float]:
    """One optimiser step per batch of ``batches`` (index arrays); the per-step losses. The L3 parity probe."""
    trainer = Trainer(model, spec, compute_loss, train=train, total_steps=len(batches))
    x = check_images(images, channels=spec.model.in_channels)
    y = check_labels(labels, num_classes=spec.model.num_classes, n=len(images))
    return [trainer.step(x[idx], y[idx]) for idx in batches]
