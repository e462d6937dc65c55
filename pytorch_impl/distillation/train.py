"""Training and evaluation of the distillation student (PyTorch twin): the twin's Trainer with the KD loss."""

from __future__ import annotations

import numpy as np
import torch

from shared.data.distillation import DistillationData, Split, check_targets, load
from shared.metrics.distillation import evaluate as distillation_metrics
from shared.specs.base import TrainSpec
from shared.specs.distillation import DistillationSpec

from ..classification.model import ResNet, predict
from ..tensors import resolve_device, to_native
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
    dev = resolve_device(device)
    if model is None:
        torch.manual_seed(spec.train.seed)
        model = build_model(spec)
    model.to(dev)
    images = to_native(data.train.images, channels=spec.model.in_channels, device=dev)
    targets = torch.from_numpy(check_targets(data.train.targets, spec.model.num_classes, len(data.train))).to(dev)
    history = fit_spec(model, spec, compute_loss, images, targets,
                       evaluate=lambda: evaluate(model, data.test, spec, dev), progress=progress, device=dev)
    return model.cpu(), history


def train_steps(model: ResNet, spec: DistillationSpec, images: np.ndarray, targets: np.ndarray,
                batches: list[np.ndarray], train: TrainSpec) -> list[float]:
    """One optimiser step per batch of ``batches`` (index arrays); the per-step losses. The L3 parity probe."""
    trainer = Trainer(model, spec, compute_loss, train=train, total_steps=len(batches))
    x = to_native(images, channels=spec.model.in_channels)
    y = torch.from_numpy(check_targets(targets, spec.model.num_classes, len(images)))
    return [trainer.step(x[torch.as_tensor(idx)], y[torch.as_tensor(idx)]) for idx in batches]
