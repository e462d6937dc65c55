"""Specification of the Faster R-CNN-style two-stage detector (issue 5; seed answers 5, 23).

``FasterRCNNSpec`` is the ``rcnn`` field of shared.specs.detection.DetectionSpec;
it is read when ``model.detector == "faster_rcnn"`` (the SSD ignores it). The
defaults are torchvision's ``FasterRCNN`` (RPN IoU 0.7 / 0.3, 256 anchors per
image at 50% positives, NMS 0.7; RoI IoU 0.5, 25% positives) with counts sized
for 64-128 px images.

Shapes are static wherever the frameworks allow: the RPN keeps
``pre_nms_top_n`` anchors by objectness per image, NMS keeps at most
``post_nms_top_n`` and the rest of the ``post_nms_top_n`` proposal slots are
zero boxes ``(0, 0, 0, 0)``, which the losses skip (zero area) and
post-processing removes (smaller than ``min_size``).

Sampling is deterministic and identical in both twins (``sampling_priority``):
a numpy permutation seeded by ``sampling_seed`` ranks the candidates once;
an image's sampled positives are its positives of best rank, likewise its
negatives. Which anchors and proposals are positive changes with every image,
so the sampled sets change too, but the rule itself holds no state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import SpecError, check_range

# Ground-truth rows a packed target may carry (shared.specs.detection.DetectionDataSpec.max_objects <= 50);
# the RoI sampling priorities cover post_nms_top_n proposals and this many boxes.
MAX_GT_BOXES = 50
# torchvision's RPN box coder weights (the RoI head uses shared.anchors.BOX_CODER_WEIGHTS, 10, 10, 5, 5).
RPN_BOX_CODER_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
# Output keys of the faster_rcnn detector, in this order (DetectionSpec.output_keys).
FASTER_RCNN_OUTPUT_KEYS = ("objectness", "rpn_box_regression", "proposals", "cls_logits", "box_regression")
# The RPN's raw outputs.
RPN_OUTPUT_KEYS = ("objectness", "rpn_box_regression")
# The part of the network an exported graph covers: backbone and RPN heads, and the RoI level's feature map [N, H, W, C]
# the RoI heads read (NMS and RoIAlign stay in the frameworks, which finish the outputs from these: ``finish_export``).
EXPORT_OUTPUT_KEYS = (*RPN_OUTPUT_KEYS, "roi_features")
# Why a two-stage model does not export whole, and what its graphs hold instead (the specs' ``export_limit``).
EXPORT_LIMIT = ("proposal NMS keeps a data-dependent number of boxes, so an exported graph holds the backbone, the RPN "
                "and the RoI level's feature map (parity level L4 compares it), and the framework that exported it "
                "runs the proposals, NMS and RoI heads on those outputs")


@dataclass(frozen=True)
class FasterRCNNSpec:
    """RPN, RoI head and their training targets (torchvision's names where it has them).

    rpn_head_width: channels of the RPN's 3x3 conv (0: as many as the level's input).
    pre_nms_top_n: anchors kept per image by objectness before NMS (over all levels at once).
    post_nms_top_n: proposals per image after NMS (fixed: zero boxes pad the rest).
    rpn_nms_iou: NMS IoU of the proposals.
    min_size: proposals narrower or shorter than this many pixels are dropped.
    rpn_fg_iou, rpn_bg_iou: anchor matching (>= fg positive, < bg negative, else ignored; each
        box also claims its best anchors, torchvision's allow_low_quality_matches).
    rpn_batch_size, rpn_positive_fraction: anchors sampled per image and their positive share.
    roi_level: the anchor level whose feature map the RoI head pools from (0: the finest one).
    roi_output_size, roi_sampling_ratio: RoIAlign's bins per side and samples per bin and axis.
    representation_size: width of the RoI head's two fully-connected layers.
    roi_fg_iou: RoIs with IoU >= this are positives, the rest (of positive area) negatives.
    roi_batch_size, roi_positive_fraction: RoIs sampled per image and their positive share.
    smooth_l1_beta: of both box losses (torchvision's 1/9).
    sampling_seed: seeds the sampling priorities (see the module docstring).
    """

    rpn_head_width: int = 0
    pre_nms_top_n: int = 256
    post_nms_top_n: int = 64
    rpn_nms_iou: float = 0.7
    min_size: float = 1e-3
    rpn_fg_iou: float = 0.7
    rpn_bg_iou: float = 0.3
    rpn_batch_size: int = 256
    rpn_positive_fraction: float = 0.5
    roi_level: int = 0
    roi_output_size: int = 7
    roi_sampling_ratio: int = 2
    representation_size: int = 128
    roi_fg_iou: float = 0.5
    roi_batch_size: int = 128
    roi_positive_fraction: float = 0.25
    smooth_l1_beta: float = 1.0 / 9.0
    sampling_seed: int = 0

    def __post_init__(self) -> None:
        check_range("rcnn", "rpn_head_width", self.rpn_head_width, 0, 4096, integer=True)
        check_range("rcnn", "pre_nms_top_n", self.pre_nms_top_n, 1, 100_000, integer=True)
        check_range("rcnn", "post_nms_top_n", self.post_nms_top_n, 1, 100_000, integer=True)
        if self.post_nms_top_n > self.pre_nms_top_n:
            raise SpecError(f"rcnn.post_nms_top_n: expected an integer <= rcnn.pre_nms_top_n ({self.pre_nms_top_n}); "
                            f"received: {self.post_nms_top_n}")
        check_range("rcnn", "rpn_nms_iou", self.rpn_nms_iou, 0.0, 1.0)
        check_range("rcnn", "min_size", self.min_size, 0.0, 1000.0)
        check_range("rcnn", "rpn_fg_iou", self.rpn_fg_iou, 0.01, 1.0)
        check_range("rcnn", "rpn_bg_iou", self.rpn_bg_iou, 0.0, 1.0)
        if self.rpn_bg_iou > self.rpn_fg_iou:
            raise SpecError(f"rcnn.rpn_bg_iou: expected a number <= rcnn.rpn_fg_iou ({self.rpn_fg_iou}); "
                            f"received: {self.rpn_bg_iou}")
        check_range("rcnn", "rpn_batch_size", self.rpn_batch_size, 1, 100_000, integer=True)
        check_range("rcnn", "rpn_positive_fraction", self.rpn_positive_fraction, 0.0, 1.0)
        check_range("rcnn", "roi_level", self.roi_level, 0, 16, integer=True)
        check_range("rcnn", "roi_output_size", self.roi_output_size, 1, 64, integer=True)
        check_range("rcnn", "roi_sampling_ratio", self.roi_sampling_ratio, 1, 16, integer=True)
        check_range("rcnn", "representation_size", self.representation_size, 1, 16384, integer=True)
        check_range("rcnn", "roi_fg_iou", self.roi_fg_iou, 0.01, 1.0)
        check_range("rcnn", "roi_batch_size", self.roi_batch_size, 1, 100_000, integer=True)
        check_range("rcnn", "roi_positive_fraction", self.roi_positive_fraction, 0.0, 1.0)
        check_range("rcnn", "smooth_l1_beta", self.smooth_l1_beta, 1e-6, 100.0)
        check_range("rcnn", "sampling_seed", self.sampling_seed, 0, 2**31 - 1, integer=True)

    @property
    def num_roi_candidates_max(self) -> int:
        """Length of the RoI sampling priorities: every proposal slot and up to MAX_GT_BOXES ground-truth boxes."""
        return self.post_nms_top_n + MAX_GT_BOXES


def sampling_priority(n: int, seed: int, stream: int) -> np.ndarray:
    """[n] float32, a permutation of 0..n-1: the rank of each candidate when sampling (lower first).

    stream 0 ranks the anchors (RPN), stream 1 the RoI candidates (proposal slots, then ground-truth rows).
    Both twins turn this one array into a constant, so they sample the same anchors and RoIs.
    """
    return np.random.default_rng([seed, stream]).permutation(n).astype(np.float32)
