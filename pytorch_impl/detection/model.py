"""The detection task's models (PyTorch twin): the detector ``spec.model.detector`` names, through the table of
detectors (``detectors.py``), and eval-mode outputs for numpy images. Reads line for line like
``tensorflow_impl/detection/model.py``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from shared.specs.detection import DetectionSpec

from ..tensors import batched_outputs
from .detectors import detector


def build_model(spec: DetectionSpec) -> nn.Module:
    """The detector ``spec.model.detector`` names: SSD-, YOLO- or Faster R-CNN-style."""
    return detector(spec).build(spec)


def export_view(model, spec: DetectionSpec):
    """The part of ``model`` an exported graph holds, and its output keys: the whole network, except for
    the Faster R-CNN-style detector, whose graph stops at the RPN (``spec.export_limit`` says why)."""
    return detector(spec).export_view(model, spec)


def finish_export(model, spec: DetectionSpec, exported: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every eval-mode output of ``model`` from what its exported graph (``export_view``) gave, NHWC numpy: the
    two-stage detector's proposals and RoI head run in the framework; a single-shot detector's graph gives them all."""
    finish = detector(spec).finish_export
    return exported if finish is None else finish(model, exported)


def predict(model, images: np.ndarray, *, with_features: bool = False, batch_size: int = 64,
            device: str | torch.device = "cpu") -> dict[str, np.ndarray]:
    """Eval-mode head outputs for NHWC numpy images: ``cls_logits`` [N, A, K + 1], ``box_regression`` [N, A, 4].

    With ``with_features``, every anchor level's map too, as ``features.<l>``: [N, H_l, W_l, C_l].
    """
    return batched_outputs(model, images, with_features=with_features, batch_size=batch_size, device=device)