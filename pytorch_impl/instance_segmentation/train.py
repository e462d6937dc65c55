"""Training and evaluation of the instance-segmentation twin (PyTorch)."""

from __future__ import annotations

import numpy as np
import torch

from shared.data import check_images
from shared.data.detection import DetectionData, DetectionSplit
from shared.data.instance_segmentation import load, pack_instance_targets
from shared.metrics.instance_segmentation import coco_instance_metrics
from shared.specs.base import TrainSpec
from shared.specs.instance_segmentation import InstanceSegmentationSpec

from ..detection.train import random_erasing
from ..tensors import resolve_device, to_native
from ..training import Trainer, fit_spec
from .loss import compute_loss
from .model import MaskRCNN, build_model, predict
from .postprocess import postprocess


def segment(model: MaskRCNN, images: np.ndarray, spec: InstanceSegmentationSpec,
            device: str = "cpu") -> list[dict[str, np.ndarray]]:
    """Instances for NHWC numpy images: per image ``boxes`` [D, 4], ``scores`` [D], ``labels`` [D], ``masks``
    [D, H, W] bool."""
    return postprocess(predict(model, images, device=device), spec)


def evaluate(model: MaskRCNN, split: DetectionSplit, spec: InstanceSegmentationSpec, device: str = "cpu") -> dict:
    """COCO mask and box metrics on ``split`` (shared.metrics.instance_segmentation): mask_map50, box_map50, ..."""
    return coco_instance_metrics(segment(model, split.images, spec, device), split)


def train(spec: InstanceSegmentationSpec, data: DetectionData | None = None, *, model: MaskRCNN | None = None,
          device: str = "cpu", progress: bool = True) -> tuple[MaskRCNN, list[dict]]:
    """Train on ``data`` (loaded from the spec if None); returns the model and per-epoch history (with COCO
    metrics on the validation split, ``val_mask_map50`` ...: the held-out test split is scored once, after
    training)."""
    spec.check_data_matches()
    data = data or load(spec)
    dev = resolve_device(device)
    if model is None:
        torch.manual_seed(spec.train.seed)
        model = build_model(spec)
    model.to(dev)
    images, targets = _training_arrays(spec, data.train.images, data.train.targets)
    images, targets = to_native(images, device=dev), torch.from_numpy(targets).to(dev)
    history = fit_spec(model, spec, compute_loss, images, targets,
                       evaluate=lambda: evaluate(model, data.val, spec, dev), evaluate_on="val", progress=progress,
                       augment=random_erasing(spec), device=dev)
    return model.cpu(), history


def train_steps(model: MaskRCNN, spec: InstanceSegmentationSpec, images: np.ndarray, targets,
                batches: list[np.ndarray], train: TrainSpec) -> list[float]:
    """One optimiser step per batch of ``batches`` (index arrays); the per-step losses. The L3 parity probe.

    targets: per image ``{"boxes", "labels", "masks"}`` (the split's ``targets``) or their packed
    [N, spec.target_width] array (shared.data.instance_segmentation.training_targets)."""
    trainer = Trainer(model, spec, compute_loss, train=train, total_steps=len(batches))
    images, targets = _training_arrays(spec, images, targets)
    x, y = to_native(images), torch.from_numpy(targets)
    return [trainer.step(x[torch.as_tensor(idx)], y[torch.as_tensor(idx)]) for idx in batches]


def _training_arrays(spec: InstanceSegmentationSpec, images: np.ndarray, targets) -> tuple[np.ndarray, np.ndarray]:
    """Validated NHWC images and targets packed to [N, target_width] (one array both trainers index by batch)."""
    h, w, c = spec.input_shape
    images = check_images(images, channels=c, size=(h, w))
    packed = pack_instance_targets(targets, spec)
    if packed.shape[0] != len(images):
        raise ValueError(f"targets: expected one per image ({len(images)}); received {packed.shape[0]}")
    return images, packed
