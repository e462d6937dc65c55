"""Specification of the instance-segmentation twins (seed answers 7, 21 and 24): Mask R-CNN-style.

The detector is the detection task's Faster R-CNN-style two-stage network (shared/specs/faster_rcnn.py), on the
same generated scenes; a mask head (torchvision's ``MaskRCNNHeads`` and ``MaskRCNNPredictor``, narrower) reads
RoIAlign features of each RoI and predicts one ``mask_size`` x ``mask_size`` mask per class, of which the RoI's
class is used. ``InstanceSegmentationSpec`` is therefore a ``DetectionSpec`` with a ``mask`` field: every
detection field (data, anchors, ``rcnn``, post-processing, tolerances) means what it means there.

What the masks are: the visible pixels of each object (``DetectionSplit.visible_masks``, COCO's convention:
a segmentation can only see what is in the image), inside the detection set's amodal boxes, which the
detector keeps unchanged. Visible masks never overlap, so a training target is one instance-id map per image.

Where the masks are computed, for fixed shapes in both frameworks: in training on up to ``rois_per_image``
sampled positive RoIs per image (torchvision: every positive one), in eval mode on every proposal slot, so
``mask_logits`` is [N, P, S, S, K] beside ``cls_logits`` [N, P, K + 1]. Post-processing pastes the mask of a
detection's class, predicted in its proposal's frame, into the image at that proposal box (torchvision
re-runs the head on the refined detection boxes: one more RoIAlign pass over a data-dependent count).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field

from . import detection
from .base import SpecError, TrainSpec, check_range
from .detection import OUTPUT_KEYS, DetectionSpec, DetectionTolerances
from .faster_rcnn import EXPORT_LIMIT, FASTER_RCNN_OUTPUT_KEYS

# Output keys of the Mask R-CNN-style model: the two-stage detector's, then the masks of every proposal slot.
INSTANCE_OUTPUT_KEYS = (*FASTER_RCNN_OUTPUT_KEYS, "mask_logits")


@dataclass(frozen=True)
class MaskHeadSpec:
    """The mask branch (torchvision's MaskRCNNHeads + MaskRCNNPredictor; torchvision: 14 bins, 4 x 256 layers).

    roi_output_size: RoIAlign bins per side of the mask head's input (on the RoI head's feature level).
    sampling_ratio: RoIAlign samples per bin and axis (also for cropping the mask targets).
    layers: widths of its 3x3 conv + ReLU layers; then a 2x2 stride-2 transposed conv + ReLU of the last width
        and a 1x1 conv to one logit per class, so masks are ``mask_size`` = 2 x roi_output_size per side.
    rois_per_image: positive RoIs per image the mask loss is taken on (the sampled positives of best priority).
    threshold: a pasted mask probability above it is a mask pixel (torchvision's 0.5).
    """

    roi_output_size: int = 14
    sampling_ratio: int = 2
    layers: tuple[int, ...] = (64, 64)
    rois_per_image: int = 16
    threshold: float = 0.5

    def __post_init__(self) -> None:
        check_range("mask", "roi_output_size", self.roi_output_size, 1, 64, integer=True)
        check_range("mask", "sampling_ratio", self.sampling_ratio, 1, 16, integer=True)
        if not isinstance(self.layers, tuple) or not self.layers:
            raise SpecError(f"mask.layers: expected a non-empty tuple of widths; received: {self.layers!r}")
        for i, width in enumerate(self.layers):
            check_range("mask", f"layers[{i}]", width, 1, 4096, integer=True)
        check_range("mask", "rois_per_image", self.rois_per_image, 1, 10_000, integer=True)
        check_range("mask", "threshold", self.threshold, 0.0, 1.0)

    @property
    def mask_size(self) -> int:
        """S: the side of every predicted mask."""
        return 2 * self.roi_output_size


@dataclass(frozen=True)
class InstanceTolerances(DetectionTolerances):
    """DetectionTolerances plus L5's masks: paired detections' pasted masks overlap at least ``mask_iou``."""

    mask_iou: float = 0.99

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("tolerances", "mask_iou", self.mask_iou, 0.0, 1.0)


@dataclass(frozen=True)
class InstanceSegmentationSpec(DetectionSpec):
    """The Faster R-CNN-style detector (``DetectionSpec``, ``model.detector`` "faster_rcnn") plus ``mask``.

    Outputs of ``build_model(spec)`` in both twins: the detector's five, then ``mask_logits`` [N, P, S, S, K]
    (eval mode: every proposal slot's mask logits, one channel per foreground class, NHWC like all data).
    """

    TASK: typing.ClassVar[str] = "instance_segmentation"

    mask: MaskHeadSpec = field(default_factory=MaskHeadSpec)
    task: str = "instance_segmentation"
    output_keys: tuple[str, ...] = INSTANCE_OUTPUT_KEYS
    tolerances: InstanceTolerances = field(default_factory=InstanceTolerances)

    def expected_output_keys(self) -> tuple[str, ...]:
        return INSTANCE_OUTPUT_KEYS

    def __post_init__(self) -> None:
        if self.model.detector != "faster_rcnn":
            raise SpecError(f"model.detector: the mask head sits on the two-stage detector's RoIs; expected "
                            f"'faster_rcnn'; received: {self.model.detector!r}")
        if not isinstance(self.mask, MaskHeadSpec):
            raise SpecError(f"instance_segmentation.mask: expected a MaskHeadSpec; received: {self.mask!r}")
        super().__post_init__()

    @property
    def export_limit(self) -> str | None:
        return EXPORT_LIMIT + " (box and mask)"

    @property
    def body_keys(self) -> tuple[str, ...]:
        """What ``body_from`` carries over: the whole trained two-stage detector (body, RPN and RoI box head);
        the mask head starts from its seeded initialisation."""
        return ("backbone.", "extras.", "necks.", "rpn.", "roi_head.")

    @property
    def selected_outputs(self) -> dict[str, tuple[str, ...]]:
        return {"proposals": ("cls_logits", "box_regression", "mask_logits")}

    @property
    def target_width(self) -> int:
        """Columns of one image's training target (shared.data.instance_segmentation.training_targets):
        ``max_objects`` packed box rows of 5, then the H x W instance-id map."""
        h, w, _ = self.input_shape
        return self.data.max_objects * 5 + h * w


def spec_from_dict(values: dict) -> InstanceSegmentationSpec:
    """Rebuild the spec from ``dataclasses.asdict`` output (the TensorFlow twin's ``from_config``)."""
    return detection.spec_from_dict(values, InstanceSegmentationSpec)


def _from_detector(base: DetectionSpec, mask: MaskHeadSpec, **changes) -> InstanceSegmentationSpec:
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(DetectionSpec)
              if f.name not in ("task", "output_keys", "tolerances")}
    fields.update(changes)
    return InstanceSegmentationSpec(**fields, mask=mask, output_keys=INSTANCE_OUTPUT_KEYS)


def tiny() -> InstanceSegmentationSpec:
    """The tiny two-stage detector (``detection.tiny_faster_rcnn``: 64 px, 32 proposals) with a 7-bin, one-layer
    mask head (14 x 14 masks) trained on 8 RoIs per image."""
    return _from_detector(detection.tiny_faster_rcnn(), MaskHeadSpec(roi_output_size=7, layers=(16,),
                                                                     rois_per_image=8))


def standard() -> InstanceSegmentationSpec:
    """The report's model: the standard two-stage detector (128 px, 64 proposals, RoI level stride 8) starting
    from the detection task's trained Faster R-CNN-style run (``body_from``), and a mask head of two 64-wide
    layers on 14 x 14 RoIAlign bins (28 x 28 masks)."""
    base = detection.standard_faster_rcnn()
    return _from_detector(base, MaskHeadSpec(), body_from="detection.faster_rcnn",
                          train=TrainSpec(optimizer="adam", lr=0.002, weight_decay=0.0, epochs=2, batch_size=16))


__all__ = ["INSTANCE_OUTPUT_KEYS", "InstanceSegmentationSpec", "InstanceTolerances", "MaskHeadSpec", "OUTPUT_KEYS",
           "spec_from_dict", "standard", "tiny"]
