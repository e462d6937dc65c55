"""Training and evaluation of the OCR twin (TensorFlow / Keras ``fit``)."""

from __future__ import annotations

import keras
import numpy as np

from shared.data.ocr import OCRData, OCRSplit, check_targets, load
from shared.metrics.ocr import text_metrics
from shared.specs.base import TrainSpec
from shared.specs.ocr import OCRSpec

from ..tensors import resolve_device
from ..training import Trainer, fit_spec
from .decode import read
from .loss import compute_loss
from .model import CRNN, build_model


def evaluate(model: CRNN, split: OCRSplit, spec: OCRSpec, device: str = "cpu") -> dict:
    """cer, wer and line accuracy of greedy decoding on ``split`` (shared.metrics.ocr)."""
    return text_metrics(read(model, split.images, spec), split.texts)


def train(spec: OCRSpec, data: OCRData | None = None, *, model: CRNN | None = None, device: str = "cpu",
          progress: bool = True) -> tuple[CRNN, list[dict]]:
    """Train on ``data`` (loaded from the spec if None); returns the model and per-epoch history (with the
    validation split's metrics, ``val_cer`` ...: the held-out test split is scored once, after training)."""
    data = data or load(spec)
    resolve_device(device)
    if model is None:
        keras.utils.set_random_seed(spec.train.seed)
        model = build_model(spec)
    images, targets = _training_arrays(spec, data.train.images, data.train.targets)
    history = fit_spec(model, spec, compute_loss, images, targets,
                       evaluate=lambda: evaluate(model, data.val, spec, device), evaluate_on="val", progress=progress,
                       device=device)
    return model, history


def train_steps(model: CRNN, spec: OCRSpec, images: np.ndarray, targets: np.ndarray, batches: list[np.ndarray],
                train: TrainSpec) -> list[float]:
    """One optimiser step per batch of ``batches`` (index arrays); the per-step losses. The L3 parity probe."""
    trainer = Trainer(model, spec, compute_loss, train=train, total_steps=len(batches))
    images, targets = _training_arrays(spec, images, targets)
    return [trainer.step(images[idx], targets[idx]) for idx in batches]


def _training_arrays(spec: OCRSpec, images: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validated NHWC line images and packed targets (one array both trainers can index by batch)."""
    from shared.data import check_images

    h, w, c = spec.input_shape
    images = check_images(images, channels=c, size=(h, w))
    return images, check_targets(targets, len(images), spec.data.max_length, spec.steps)
