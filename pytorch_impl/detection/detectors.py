"""The table of detectors (PyTorch twin): one entry per ``spec.model.detector``, and the only place that
dispatches on it. ``model.py``, ``loss.py`` and ``postprocess.py`` go through it; each detector lives in its
own module (``ssd.py``, ``yolo.py``, ``faster_rcnn.py``) over the shared ``body``, ``targets`` and ``select``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from shared.specs.detection import DetectionSpec

from . import faster_rcnn, ssd, yolo


@dataclass(frozen=True)
class Detector:
    """build(spec) -> model; loss(outputs, targets, spec) -> fixed-key dict; postprocess(outputs, spec)
    -> one dict of detections per image; export_view(model, spec) -> (what an exported graph holds, its output
    keys); finish_export(model, exported) -> every output from the exported graph's (None: it holds them all)."""

    build: Callable
    loss: Callable
    postprocess: Callable
    export_view: Callable
    finish_export: Callable | None = None


def whole_model(model, spec: DetectionSpec):
    """The whole network exports: the single-shot detectors."""
    return model, tuple(spec.output_keys)


def rpn_only(model, spec: DetectionSpec):
    """The two-stage detector's graph stops at the RPN (``spec.export_limit`` says why)."""
    return faster_rcnn.RPNExport(model), faster_rcnn.RPNExport.output_keys


DETECTORS = {
    "ssd": Detector(ssd.SSD, ssd.ssd_loss, ssd.ssd_postprocess, whole_model),
    "yolo": Detector(yolo.YOLO, yolo.yolo_loss, yolo.yolo_postprocess, whole_model),
    "faster_rcnn": Detector(faster_rcnn.FasterRCNN, faster_rcnn.compute_loss, faster_rcnn.postprocess, rpn_only,
                            faster_rcnn.finish_export),
}


def detector(spec: DetectionSpec) -> Detector:
    """The table's entry for ``spec.model.detector``."""
    name = spec.model.detector
    if name not in DETECTORS:
        raise ValueError(f"model.detector: expected one of {sorted(DETECTORS)}; received {name!r}")
    return DETECTORS[name]
