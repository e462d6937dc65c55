"""Training with on-the-fly augmentation (PyTorch twin): the classification network and loss, each batch
through the torchvision pipeline before its step."""

from __future__ import annotations

import torch

from shared.data import check_labels
from shared.data.augmentation import load
from shared.data.classification import ClassificationData, Split
from shared.specs.augmentation import AugmentationSpec

from ..classification.loss import compute_loss
from ..classification.model import ResNet, build_model
from ..classification.train import evaluate as evaluate_classifier
from ..tensors import resolve_device, to_native
from ..training import fit_spec
from .ops import augment_batch, build_pipeline


def evaluate(model: ResNet, split: Split, spec: AugmentationSpec, device: str = "cpu") -> dict:
    """accuracy, balanced_accuracy and per_class_recall on ``split`` (never augmented)."""
    return evaluate_classifier(model, split, spec, device)


def train(spec: AugmentationSpec, data: ClassificationData | None = None, *, model: ResNet | None = None,
          device: str = "cpu", progress: bool = True) -> tuple[ResNet, list[dict]]:
    """Train on ``data`` with ``spec.augment``'s ops on the fly; returns the model and per-epoch history (the
    training split's accuracy too, un-augmented, for the train-test gap)."""
    spec.check_data_matches()
    data = data or load(spec)
    dev = resolve_device(device)
    torch.manual_seed(spec.train.seed)  # the pipeline's draws, and the model's when it is built here
    if model is None:
        model = build_model(spec)
    model.to(dev)
    images = to_native(data.train.images, channels=spec.model.in_channels, device=dev)
    labels = torch.from_numpy(check_labels(data.train.labels, num_classes=spec.model.num_classes,
                                           n=len(data.train))).to(dev)
    history = fit_spec(model, spec, compute_loss, images, labels,
                       evaluate=lambda: evaluate(model, data.test, spec, dev), progress=progress,
                       augment=augment_batch(build_pipeline(spec.augment, spec.data.image_size, spec.train.seed)),
                       device=dev)
    return model.cpu(), history
