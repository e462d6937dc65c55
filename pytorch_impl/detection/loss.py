"""The detection task's loss (PyTorch twin): the loss of the detector ``spec.model.detector`` names, as a
fixed-key dict (``detectors.py``; the SSD's multibox loss is in ``ssd.py``).
"""

from __future__ import annotations

import torch

from shared.specs.detection import DetectionSpec

from .detectors import detector


def compute_loss(outputs: dict[str, torch.Tensor], targets, spec: DetectionSpec) -> dict[str, torch.Tensor]:
    """outputs: the detector's head outputs (build_model's); targets: per image ``{"boxes": [N_i, 4] x1y1x2y2
    pixels, "labels": [N_i] 0-based class ids}``, or those packed into one [B, M, 5] tensor
    (shared.data.detection.pack_targets; label -1 rows are padding). Returns the detector's ``loss_*`` terms
    and their sum, ``loss``."""
    return detector(spec).loss(outputs, targets, spec)
