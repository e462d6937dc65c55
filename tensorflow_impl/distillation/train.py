"""Training and evaluation of the distillation student (TensorFlow twin): the twin's Trainer with the KD loss.

The Keras guide writes distillation as a ``Distiller`` model whose ``train_step`` calls the teacher. The twin's
Trainer is that pattern already (a model wrapping the student whose step Keras ``fit`` runs, the loss hooked in
through ``compute_loss``); with the teacher's logits in the targets the step needs no teacher call.
"""

from __future__ import annotations

import keras
import numpy as np

from shared.data import check_images
from shared.data.distillation import DistillationData, Split, check_targets, load
from shared.metrics.distillation import evaluate as distillation_metrics
from shared.specs.base import TrainSpec
from shared.specs.distillation import DistillationSpec

from ..classification.model import ResNet, predict
from ..tensors import resolve_device
from ..training import Trainer, fit_spec
from .loss import compute_loss
from .model import build_model


def evaluate(model: ResNet, split: Split, spec: DistillationSpec, device: str = "cpu") -> dict:
    """accuracy, balanced_accuracy, per_class_recall and (with the split's teacher logits) teacher_agreement."""
    return distillation_metrics(spec, predict(model, split.images, device=device), split)


def train(spec: DistillationSpec, data: DistillationData | None = None, *, model: ResNet | None = None,
          device: str = "cpu", progress: bool = True) -> tuple[ResNet, list[dict]]:
    """Distil the teacher whose logits ``data`` carries into the student; returns it and per-epoch history."""
    spec.check_data_matches()
    data = data or load(spec)
    resolve_device(device)
    if model is None:
        keras.utils.set_random_seed(spec.train.seed)
        model = build_model(spec)
    images = check_images(data.train.images, channels=spec.model.in_channels)
    targets = check_targets(data.train.targets, spec.model.num_classes, len(data.train))
    history = fit_spec(model, spec, compute_loss, images, targets,
                       evaluate=lambda: evaluate(model, data.test, spec, device), progress=progress, device=device)
    return model, history


def train_steps(model: ResNet, spec: DistillationSpec, images: np.ndarray, targets: np.ndarray,
                batches: list[np.ndarray], train: TrainSpec) -> list[float]:
    """One optimiser step per batch of ``batches`` (index arrays); the per-step losses. The L3 parity probe."""
    trainer = Trainer(model, spec, compute_loss, train=train, total_steps=len(batches))
    x = check_images(images, channels=spec.model.in_channels)
    y = check_targets(targets, spec.model.num_classes, len(images))
    return [trainer.step(x[idx], y[idx]) for idx in batches]
