"""Box operations of the detection twins: IoU, Faster R-CNN box coding, anchor matching, NMS.

Boxes are ``[N, 4]`` float tensors as ``x1, y1, x2, y2`` in input-image pixels
(shared.specs.detection states the pixel convention). NMS is
tf.image.non_max_suppression; IoU, box coding and matching are written out
formula for formula as torchvision's ``box_iou``, ``BoxCoder`` and
``Matcher``, which the PyTorch twin mirrors line for line. Every function
works eagerly and inside tf.function. tests/test_detection_ops.py checks them
against torchvision and against the twin.
"""

from __future__ import annotations

import tensorflow as tf

from shared.anchors import BACKGROUND, BBOX_XFORM_CLIP, BOX_CODER_WEIGHTS, IGNORE


def _as_boxes(boxes, name: str, dtype: tf.DType | None = None) -> tf.Tensor:
    """``boxes`` as a float tensor after checking it is [N, 4] (where the static shape is known)."""
    boxes = tf.convert_to_tensor(boxes, dtype_hint=dtype or tf.float32)
    if dtype is not None and boxes.dtype != dtype:
        boxes = tf.cast(boxes, dtype)             # as torch.as_tensor(boxes, dtype=...) converts in the twin
    shape = boxes.shape
    if shape.rank is not None and (shape.rank != 2 or shape[-1] not in (4, None)):
        raise ValueError(f"{name}: expected shape [N, 4] (x1, y1, x2, y2); received shape {shape.as_list()}")
    if not boxes.dtype.is_floating:
        raise ValueError(f"{name}: expected a float tensor; received dtype {boxes.dtype.name}")
    return boxes


def _check_weights(weights) -> tuple[float, float, float, float]:
    if len(weights) != 4 or any(float(w) <= 0 for w in weights):
        raise ValueError(f"weights: expected 4 positive numbers (wx, wy, ww, wh); received {weights!r}")
    return tuple(float(w) for w in weights)


def _check_same_length(a: tf.Tensor, b: tf.Tensor, message: str) -> None:
    n, m = a.shape[0], b.shape[0]
    if n is not None and m is not None and n != m:
        raise ValueError(message.format(n, m))


def box_iou(a, b) -> tf.Tensor:
    """[N, M] IoU of [N, 4] and [M, 4] boxes (torchvision.ops.box_iou's formula)."""
    a = _as_boxes(a, "a")
    b = _as_boxes(b, "b", a.dtype)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = tf.maximum(a[:, None, :2], b[None, :, :2])
    rb = tf.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = tf.maximum(rb - lt, 0.0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def encode_boxes(boxes, anchors, weights=BOX_CODER_WEIGHTS) -> tf.Tensor:
    """[N, 4] regression targets (dx, dy, dw, dh) of ``boxes`` relative to their ``anchors`` (both [N, 4]).

    dx = wx * (cx - cx_a) / w_a, dw = ww * log(w / w_a), likewise for y and h:
    torchvision's BoxCoder.encode_single(boxes, anchors).
    """
    boxes = _as_boxes(boxes, "boxes")
    anchors = _as_boxes(anchors, "anchors", boxes.dtype)
    _check_same_length(boxes, anchors, "boxes and anchors: expected one anchor per box; received {} boxes and "
                                       "{} anchors")
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
    dw = ww * tf.math.log(w / anchor_w)
    dh = wh * tf.math.log(h / anchor_h)
    return tf.stack([dx, dy, dw, dh], axis=1)


def decode_boxes(deltas, anchors, weights=BOX_CODER_WEIGHTS) -> tf.Tensor:
    """[N, 4] boxes from (dx, dy, dw, dh) ``deltas`` [N, 4] relative to ``anchors`` [N, 4].

    The inverse of ``encode_boxes``; dw and dh are clamped at
    ``BBOX_XFORM_CLIP`` = log(1000 / 16) first, as torchvision's
    BoxCoder.decode_single does, so an untrained head cannot overflow exp().
    """
    deltas = _as_boxes(deltas, "deltas")
    anchors = _as_boxes(anchors, "anchors", deltas.dtype)
    _check_same_length(deltas, anchors, "deltas and anchors: expected one anchor per row of deltas; received {} "
                                        "rows and {} anchors")
    wx, wy, ww, wh = _check_weights(weights)
    anchor_w = anchors[:, 2] - anchors[:, 0]
    anchor_h = anchors[:, 3] - anchors[:, 1]
    anchor_cx = anchors[:, 0] + 0.5 * anchor_w
    anchor_cy = anchors[:, 1] + 0.5 * anchor_h
    dx = deltas[:, 0] / wx
    dy = deltas[:, 1] / wy
    dw = tf.minimum(deltas[:, 2] / ww, BBOX_XFORM_CLIP)
    dh = tf.minimum(deltas[:, 3] / wh, BBOX_XFORM_CLIP)
    cx = dx * anchor_w + anchor_cx
    cy = dy * anchor_h + anchor_cy
    half_w = 0.5 * (tf.exp(dw) * anchor_w)
    half_h = 0.5 * (tf.exp(dh) * anchor_h)
    return tf.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)


def _first_argmax(values: tf.Tensor, axis: int) -> tf.Tensor:
    """Index of the maximum along ``axis``, the first one on ties (torch.max's rule; tf.argmax promises none)."""
    best = tf.reduce_max(values, axis=axis, keepdims=True)
    n = tf.shape(values, out_type=tf.int64)[axis]
    positions = tf.range(n, dtype=tf.int64)
    positions = positions[:, None] if axis == 0 else positions[None, :]
    return tf.reduce_min(tf.where(values == best, positions, n), axis=axis)


def match_anchors(anchors, gt_boxes, high: float = 0.5, low: float = 0.4,
                  allow_low_quality: bool = True) -> tf.Tensor:
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

    def no_boxes():
        return tf.fill(tf.shape(anchors)[:1], tf.constant(BACKGROUND, tf.int64))

    def some_boxes():
        iou = box_iou(gt_boxes, anchors)                              # [M, A]
        best_iou = tf.reduce_max(iou, axis=0)
        best_gt = _first_argmax(iou, axis=0)
        matches = tf.where(best_iou < low, tf.constant(BACKGROUND, tf.int64),
                           tf.where(best_iou < high, tf.constant(IGNORE, tf.int64), best_gt))
        if allow_low_quality:
            best_per_gt = tf.reduce_max(iou, axis=1, keepdims=True)   # [M, 1]
            is_best_for_some_gt = tf.reduce_any((iou == best_per_gt) & (best_per_gt > 0), axis=0)
            matches = tf.where(is_best_for_some_gt, best_gt, matches)
        return matches

    # No boxes is decided per image at run time inside a graph, by the static shape when eager.
    if gt_boxes.shape[0] is not None:
        return no_boxes() if gt_boxes.shape[0] == 0 else some_boxes()
    return tf.cond(tf.shape(gt_boxes)[0] > 0, some_boxes, no_boxes)


def batched_nms(boxes, scores, classes, iou_threshold: float = 0.5, max_output: int = 100) -> tf.Tensor:
    """int64 indices of the boxes kept, by descending score: NMS within each class.

    boxes [N, 4], scores [N], classes [N] integer. A box is suppressed by a
    higher-scoring box of the same class with IoU > ``iou_threshold``; at most
    ``max_output`` indices are returned. One tf.image.non_max_suppression call
    over all classes, kept apart by torchvision's coordinate offset
    ``class * (max coordinate + 1)``, so both twins round the same IoUs. Boxes
    are first shifted so that no coordinate is negative: the offset lets boxes
    of different classes overlap when coordinates go below -1 (IoU is
    unchanged by the shift). (tf.image.non_max_suppression reads its boxes as
    y1, x1, y2, x2, but IoU is the same under swapping the axes.)
    """
    boxes = _as_boxes(boxes, "boxes")
    scores = tf.cast(scores, boxes.dtype)
    classes = tf.convert_to_tensor(classes)
    _check_nms_args(boxes.shape, scores.shape, classes.shape, iou_threshold, max_output)
    boxes = boxes - tf.minimum(tf.reduce_min(boxes), 0.0)      # reduce_min of no boxes is +inf: no shift
    offsets = tf.cast(classes, boxes.dtype) * (tf.reduce_max(boxes) + 1.0)
    keep = tf.image.non_max_suppression(boxes + offsets[:, None], scores, max_output, iou_threshold)
    return tf.cast(keep, tf.int64)


def _check_nms_args(boxes_shape, scores_shape, classes_shape, iou_threshold, max_output) -> None:
    n = boxes_shape[0]
    for shape in (scores_shape, classes_shape):
        if shape.rank is not None and (shape.rank != 1 or (n is not None and shape[0] not in (n, None))):
            raise ValueError(f"scores, classes: expected shape [{n}] each (one per box); received "
                             f"{scores_shape.as_list()} and {classes_shape.as_list()}")
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold: expected a number in [0, 1]; received {iou_threshold}")
    if isinstance(max_output, bool) or not isinstance(max_output, int) or max_output < 0:
        raise ValueError(f"max_output: expected a non-negative integer; received {max_output!r}")


__all__ = ["BACKGROUND", "BBOX_XFORM_CLIP", "BOX_CODER_WEIGHTS", "IGNORE", "batched_nms", "box_iou", "decode_boxes",
           "encode_boxes", "match_anchors"]
