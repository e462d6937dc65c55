"""Training with on-the-fly augmentation (TensorFlow twin): the classification network and loss, each batch
through the Keras layers inside the compiled training step."""

from __future__ import annotations

import keras

from shared.data import check_images, check_labels
from shared.data.augmentation import load
from shared.data.classification import ClassificationData, Split
from shared.specs.augmentation import AugmentationSpec

from ..classification.loss import compute_loss
from ..classification.model import ResNet, build_model
from ..classification.train import evaluate as evaluate_classifier
from ..tensors import resolve_device
from ..training import fit_spec
from .ops import augment_batch, build_pipeline


def evaluate(model: ResNet, split: Split, spec: AugmentationSpec, device: str = "cpu") -> dict:
    """accuracy, balanced_accuracy and per_class_recall on ``split`` (never augmented)."""
    return evaluate_classifier(model, split, spec, device)


def train(spec: AugmentationSpec, data: ClassificationData | None = None, *, model: ResNet | None = None,
          device: str = "cpu", progress: bool = True) -> tuple[ResNet, list[dict]]:
    """Train on ``data`` with ``spec.augment``'s ops on the fly; returns the model and per-epoch history."""
    spec.check_data_matches()
    data = data or load(spec)
    resolve_device(device)
    keras.utils.set_random_seed(spec.train.seed)
    if model is None:
        model = build_model(spec)
    images = check_images(data.train.images, channels=spec.model.in_channels)
    labels = check_labels(data.train.labels, num_classes=spec.model.num_classes, n=len(data.train))
    history = fit_spec(model, spec, compute_loss, images, labels,
                       evaluate=lambda: evaluate(model, data.test, spec, device), progress=progress,
                       augment=augment_batch(build_pipeline(spec.augment, spec.data.image_size, spec.train.seed)),
                       device=device)
    return model, history
