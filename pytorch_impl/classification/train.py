"""Training and evaluation of the classification twin (PyTorch)."""

from __future__ import annotations

import numpy as np
import torch

from shared.data import check_labels
from shared.data.classification import ClassificationData, Split, load_classification
from shared.metrics.classification import classification_metrics
from shared.specs.base import TrainSpec
from shared.specs.classification import ClassificationSpec

from ..tensors import resolve_device, to_native
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
    dev = resolve_device(device)
    if model is None:
        torch.manual_seed(spec.train.seed)
        model = build_model(spec)
    model.to(dev)
    images = to_native(data.train.images, channels=spec.model.in_channels, device=dev)
    labels = torch.from_numpy(check_labels(data.train.labels, num_classes=spec.model.num_classes,
                                           n=len(data.train))).to(dev)
    history = fit_spec(model, spec, compute_loss, images, labels,
                       evaluate=lambda: evaluate(model, data.test, spec, dev), progress=progress, device=dev)
    return model.cpu(), history


def train_steps(model: ResNet, spec: ClassificationSpec, images: np.ndarray, labels: np.ndarray,
                batches: list[np.ndarray], train: TrainSpec) -> list[float]:
    """One optimiser step per batch of ``batches`` (index arrays); the per-step losses. The L3 parity probe."""
    trainer = Trainer(model, spec, compute_loss, train=train, total_steps=len(batches))
    x = to_native(images, channels=spec.model.in_channels)
    y = torch.from_numpy(check_labels(labels, num_classes=spec.model.num_classes, n=len(images)))
    return [trainer.step(x[torch.as_tensor(idx)], y[torch.as_tensor(idx)]) for idx in batches]
