"""Training and evaluation of the semantic-segmentation twin (TensorFlow / Keras ``fit``)."""

from __future__ import annotations

import numpy as np
import keras

from shared.data.semantic_segmentation import SegmentationData, SegmentationSplit, check_class_maps, load
from shared.metrics.semantic_segmentation import segmentation_metrics
from shared.specs.base import TrainSpec
from shared.specs.semantic_segmentation import SegmentationSpec

from ..tensors import resolve_device
from ..training import Trainer, fit_spec
from .loss import compute_loss
from .model import Segmenter, build_model, predict


def evaluate(model: Segmenter, split: SegmentationSplit, spec: SegmentationSpec, device: str = "cpu") -> dict:
    """miou, pixel_accuracy, boundary_iou and per-class IoU on ``split`` (shared.metrics.semantic_segmentation)."""
    logits = predict(model, split.images, device=device)["logits"]
    return segmentation_metrics(logits, split.masks, spec.model.num_classes)


def train(spec: SegmentationSpec, data: SegmentationData | None = None, *, model: Segmenter | None = None,
          device: str = "cpu", progress: bool = True) -> tuple[Segmenter, list[dict]]:
    """Train on ``data`` (loaded from the spec if None); returns the model and per-epoch history (with the
    metrics of the validation split, ``val_miou`` ...: the held-out test split is scored once, after training)."""
    spec.check_data_matches()
    data = data or load(spec)
    resolve_device(device)
    if model is None:
        keras.utils.set_random_seed(spec.train.seed)
        model = build_model(spec)
    images, targets = _training_arrays(spec, data.train.images, data.train.masks)
    history = fit_spec(model, spec, compute_loss, images, targets,
                       evaluate=lambda: evaluate(model, data.val, spec, device), evaluate_on="val", progress=progress,
                       device=device)
    return model, history


def train_steps(model: Segmenter, spec: SegmentationSpec, images: np.ndarray, targets: np.ndarray,
                batches: list[np.ndarray], train: TrainSpec) -> list[float]:
    """One optimiser step per batch of ``batches`` (index arrays); the per-step losses. The L3 parity probe."""
    trainer = Trainer(model, spec, compute_loss, train=train, total_steps=len(batches))
    images, targets = _training_arrays(spec, images, targets)
    return [trainer.step(images[idx], targets[idx]) for idx in batches]


def _training_arrays(spec: SegmentationSpec, images: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validated NHWC images and [N, H, W] int64 class maps (one array both trainers can index by batch)."""
    from shared.data import check_images

    h, w, c = spec.input_shape
    images = check_images(images, channels=c, size=(h, w))
    return images, check_class_maps(masks, spec.model.num_classes, len(images), (h, w))
