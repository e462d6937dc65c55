"""Box operations of the detection twins: IoU, Faster R-CNN box coding, anchor matching, NMS.

Boxes are ``[N, 4]`` float tensors as ``x1, y1, x2, y2`` in input-image pixels
(shared.specs.detection states the pixel convention). IoU and NMS are
torchvision.ops'; box coding and matching are written out here, formula for
formula as torchvision's detection ``BoxCoder`` and ``Matcher``
(torchvision.models.detection._utils, a private module), so that they read
line for line like the TensorFlow twin. tests/test_detection_ops.py checks
them against torchvision and against the twin.
"""

from __future__ import annotations

import torch
from torchvision import ops as tv_ops

from shared.anchors import BACKGROUND, BBOX_XFORM_CLIP, BOX_CODER_WEIGHTS, IGNORE


def _as_boxes(boxes, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``boxes`` as a float tensor after checking it is [N, 4]."""
    boxes = torch.as_tensor(boxes, dtype=dtype)
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"{name}: expected shape [N, 4] (x1, y1, x2, y2); received shape {list(boxes.shape)}")
    if not boxes.is_floating_point():
        raise ValueError(f"{name}: expected a float tensor; received dtype {boxes.dtype}")
    return boxes


def _check_weights(weights) -> tuple[float, float, float, float]:
    if len(weights) != 4 or any(float(w) <= 0 for w in weights):
        raise ValueError(f"weights: expected 4 positive numbers (wx, wy, ww, wh); received {weights!r}")
    return tuple(float(w) for w in weights)


def box_iou(a, b) -> torch.Tensor:
    """[N, M] IoU of [N, 4] and [M, 4] boxes (torchvision.ops.box_iou)."""
    a = _as_boxes(a, "a")
    return tv_ops.box_iou(a, _as_boxes(b, "b", a.dtype))


def encode_boxes(boxes, anchors, weights=BOX_CODER_WEIGHTS) -> torch.Tensor:
    """[N, 4] regression targets (dx, dy, dw, dh) of ``boxes`` relative to their ``anchors`` (both [N, 4]).

    dx = wx * (cx - cx_a) / w_a, dw = ww * log(w / w_a), likewise for y and h:
    torchvision's BoxCoder.encode_single(boxes, anchors).
    """
    boxes = _as_boxes(boxes, "boxes")
    anchors = _as_boxes(anchors, "anchors", boxes.dtype)
    if boxes.shape[0] != anchors.shape[0]:
        raise ValueError(f"boxes and anchors: expected one anchor per box; received {boxes.shape[0]} boxes and "
                         f"{anchors.shape[0]} anchors")
    wx, wy, ww, wh = _check_weights(weights)
    anchor_w = anchors[:, 2] - anchors[:, 0]
    anchor_h = anchors[:, 3] - anchors[:, 1]
    anchor_cx = anchors[:, 0] + 0.5 * anchor_w
    anchor_cy = anchors[:, 1] + 0.5 * anchor_h
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    cx = boxes[:, 0] + 0.5 * w
    cy = boxes[:, 1] + 0.5 * h
    dx = wx * (cx - anchor_cx) / anchor_w
    dy = wy * (cy - anchor_cy) / anchor_h
    dw = ww * torch.log(w / anchor_w)
    dh = wh * torch.log(h / anchor_h)
    return torch.stack([dx, dy, dw, dh], dim=1)


def decode_boxes(deltas, anchors, weights=BOX_CODER_WEIGHTS) -> torch.Tensor:
    """[N, 4] boxes from (dx, dy, dw, dh) ``deltas`` [N, 4] relative to ``anchors`` [N, 4].

    The inverse of ``encode_boxes``; dw and dh are clamped at
    ``BBOX_XFORM_CLIP`` = log(1000 / 16) first, as torchvision's
    BoxCoder.decode_single does, so an untrained head cannot overflow exp().
    """
    deltas = _as_boxes(deltas, "deltas")
    anchors = _as_boxes(anchors, "anchors", deltas.dtype)
    if deltas.shape[0] != anchors.shape[0]:
        raise ValueError(f"deltas and anchors: expected one anchor per row of deltas; received {deltas.shape[0]} "
                         f"rows and {anchors.shape[0]} anchors")
    wx, wy, ww, wh = _check_weights(weights)
    anchor_w = anchors[:, 2] - anchors[:, 0]
    anchor_h = anchors[:, 3] - anchors[:, 1]
    anchor_cx = anchors[:, 0] + 0.5 * anchor_w
    anchor_cy = anchors[:, 1] + 0.5 * anchor_h
    dx = deltas[:, 0] / wx
    dy = deltas[:, 1] / wy
    dw = torch.clamp(deltas[:, 2] / ww, max=BBOX_XFORM_CLIP)
    dh = torch.clamp(deltas[:, 3] / wh, max=BBOX_XFORM_CLIP)
    cx = dx * anchor_w + anchor_cx
    cy = dy * anchor_h + anchor_cy
    half_w = 0.5 * (torch.exp(dw) * anchor_w)
    half_h = 0.5 * (torch.exp(dh) * anchor_h)
    return torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=1)


def match_anchors(anchors, gt_boxes, high: float = 0.5, low: float = 0.4,
                  allow_low_quality: bool = True) -> torch.Tensor:
    """[A] int64 per anchor: the index of its ground-truth box, ``BACKGROUND`` (-1) or ``IGNORE`` (-2).

    torchvision's Matcher semantics: an anchor whose best IoU is >= ``high``
    matches that box, below ``low`` it is background, in between it is
    ignored. With ``allow_low_quality``, every anchor tied for the highest IoU
    with some box is matched too, to its own best box (so a box whose best
    anchor overlaps another box more gets no anchor from this rule).

    Two deliberate differences from torchvision: no boxes gives all
    background (torchvision raises), and a box that no anchor overlaps at all
    adds no low-quality matches (torchvision would match every anchor at
    IoU 0 to box 0, turning background into positives).
    """
    anchors = _as_boxes(anchors, "anchors")
    gt_boxes = _as_boxes(gt_boxes, "gt_boxes", anchors.dtype)
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"low, high: expected 0 <= low <= high <= 1; received low={low}, high={high}")
    if gt_boxes.shape[0] == 0:
        return torch.full((anchors.shape[0],), BACKGROUND, dtype=torch.int64)
    iou = box_iou(gt_boxes, anchors)                                  # [M, A]
    best_iou, best_gt = iou.max(dim=0)                                # first index on ties
    matches = torch.where(best_iou < low, BACKGROUND, torch.where(best_iou < high, IGNORE, best_gt))
    if allow_low_quality:
        best_per_gt = iou.max(dim=1, keepdim=True).values             # [M, 1]
        is_best_for_some_gt = ((iou == best_per_gt) & (best_per_gt > 0)).any(dim=0)
        matches = torch.where(is_best_for_some_gt, best_gt, matches)
    return matches.to(torch.int64)


def batched_nms(boxes, scores, classes, iou_threshold: float = 0.5, max_output: int = 100) -> torch.Tensor:
    """int64 indices of the boxes kept, by descending score: NMS within each class (torchvision.ops.batched_nms).

    boxes [N, 4], scores [N], classes [N] integer. A box is suppressed by a
    higher-scoring box of the same class with IoU > ``iou_threshold``; at most
    ``max_output`` indices are returned. Boxes are first shifted so that no
    coordinate is negative: torchvision separates classes by offsetting them
    ``class * (max coordinate + 1)``, which lets boxes of different classes
    overlap when coordinates go below -1 (IoU is unchanged by the shift).
    """
    boxes = _as_boxes(boxes, "boxes")
    scores, classes = torch.as_tensor(scores), torch.as_tensor(classes)
    _check_nms_args(tuple(boxes.shape), tuple(scores.shape), tuple(classes.shape), iou_threshold, max_output)
    if boxes.shape[0] == 0:
        return torch.zeros((0,), dtype=torch.int64)
    boxes = boxes - boxes.min().clamp(max=0)
    keep = tv_ops.batched_nms(boxes, scores.to(boxes.dtype), classes.to(torch.int64), float(iou_threshold))
    return keep[:max_output].to(torch.int64)


def _check_nms_args(boxes_shape, scores_shape, classes_shape, iou_threshold, max_output) -> None:
    n = boxes_shape[0]
    if scores_shape != (n,) or classes_shape != (n,):
        raise ValueError(f"scores, classes: expected shape [{n}] each (one per box); received {list(scores_shape)} "
                         f"and {list(classes_shape)}")
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold: expected a number in [0, 1]; received {iou_threshold}")
    if isinstance(max_output, bool) or not isinstance(max_output, int) or max_output < 0:
        raise ValueError(f"max_output: expected a non-negative integer; received {max_output!r}")


__all__ = ["BACKGROUND", "BBOX_XFORM_CLIP", "BOX_CODER_WEIGHTS", "IGNORE", "batched_nms", "box_iou", "decode_boxes",
           "encode_boxes", "match_anchors"]
