"""Training and evaluation of the detection twin (PyTorch)."""

from __future__ import annotations

import numpy as np
import torch

from shared.data import check_images
from shared.data.detection import DetectionData, DetectionSplit, load_detection, pack_targets
from shared.metrics.detection import coco_metrics
from shared.specs.base import TrainSpec
from shared.specs.detection import DetectionSpec

from ..tensors import resolve_device, to_native
from ..training import Trainer, fit_spec
from .loss import compute_loss
from .model import build_model, predict
from .ssd import SSD
from .postprocess import postprocess


def detect(model: SSD, images: np.ndarray, spec: DetectionSpec, device: str = "cpu") -> list[dict[str, np.ndarray]]:
    """Detections for NHWC numpy images: per image ``boxes`` [D, 4], ``scores`` [D], ``labels`` [D]."""
    return postprocess(predict(model, images, device=device), spec)


def evaluate(model: SSD, split: DetectionSplit, spec: DetectionSpec, device: str = "cpu") -> dict:
    """COCO bbox metrics on ``split`` (shared.metrics.detection.coco_metrics): map, map50, map75, ar100, ..."""
    return coco_metrics(detect(model, split.images, spec, device), split)


def train(spec: DetectionSpec, data: DetectionData | None = None, *, model: SSD | None = None,
          device: str = "cpu", progress: bool = True) -> tuple[SSD, list[dict]]:
    """Train on ``data`` (loaded from the spec if None); returns the model and per-epoch history (with COCO
    metrics on the validation split, ``val_map50`` ...: the held-out test split is scored once, after training)."""
    spec.check_data_matches()
    data = data or load_detection(spec.data)
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


def random_erasing(spec: DetectionSpec):
    """The occlusion augmentation of ``spec.erasing`` as a batch -> batch function (None when it is off).

    torchvision's RandomErasing draws one rectangle per call, so it runs per image: with probability
    ``p`` a rectangle of ``scale`` of the area and aspect ratio in ``ratio``, filled with normal noise.
    """
    from torchvision.transforms import v2

    erasing = spec.erasing
    if erasing.probability == 0.0:
        return None
    erase = v2.RandomErasing(p=erasing.probability, scale=erasing.scale, ratio=erasing.ratio, value="random")
    return lambda images: torch.stack([erase(image) for image in images])


def train_steps(model: SSD, spec: DetectionSpec, images: np.ndarray, targets, batches: list[np.ndarray],
                train: TrainSpec) -> list[float]:
    """One optimiser step per batch of ``batches`` (index arrays); the per-step losses. The L3 parity probe.

    targets: per image ``{"boxes", "labels"}`` (``DetectionSplit.targets``) or their packed [N, M, 5] array.
    """
    trainer = Trainer(model, spec, compute_loss, train=train, total_steps=len(batches))
    images, targets = _training_arrays(spec, images, targets)
    x, y = to_native(images), torch.from_numpy(targets)
    return [trainer.step(x[torch.as_tensor(idx)], y[torch.as_tensor(idx)]) for idx in batches]


def _training_arrays(spec: DetectionSpec, images: np.ndarray, targets) -> tuple[np.ndarray, np.ndarray]:
    """Validated NHWC images and targets packed to [N, M, 5] (one array both trainers can index by batch)."""
    h, w, c = spec.input_shape
    images = check_images(images, channels=c, size=(h, w))
    packed = targets if isinstance(targets, np.ndarray) else pack_targets(targets, spec.model.num_classes)
    if packed.ndim != 3 or packed.shape[0] != len(images) or packed.shape[-1] != 5:
        raise ValueError(f"targets: expected one per image ({len(images)}), packed as [N, M, 5]; received shape "
                         f"{packed.shape}")
    return images, packed.astype(np.float32)
