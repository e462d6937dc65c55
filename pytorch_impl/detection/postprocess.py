"""From a detector's head outputs to detections (PyTorch twin), by the detector ``spec.model.detector`` names
(``detectors.py``): each follows its torchvision reference step for step.
"""

from __future__ import annotations

import numpy as np

from shared.specs.detection import DetectionSpec

from .detectors import detector


def postprocess(outputs, spec: DetectionSpec) -> list[dict[str, np.ndarray]]:
    """outputs: the head outputs, tensors or numpy (``predict``'s). Returns one dict per image: ``boxes``
    float32 [D, 4] (x1, y1, x2, y2 pixels), ``scores`` float32 [D] descending, ``labels`` int64 [D] (0-based
    class ids)."""
    return detector(spec).postprocess(outputs, spec)
