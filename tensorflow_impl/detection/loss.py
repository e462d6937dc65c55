"""SSD's multibox loss (TensorFlow twin), as a fixed-key dict.

torchvision.models.detection.ssd.SSD.compute_loss is the reference; this is
the PyTorch twin's computation in TF ops, eager or inside Keras' traced
train step (per-image matching runs in ``tf.map_fn``, so the batch size may
be unknown while tracing).
"""

from __future__ import annotations

import tensorflow as tf

from shared.anchors import BACKGROUND, task_anchors
from shared.specs.detection import DetectionSpec

from ..ops import encode_boxes, match_anchors


def compute_loss(outputs: dict, targets, spec: DetectionSpec) -> dict:
    """outputs: ``cls_logits`` [B, A, K + 1] and ``box_regression`` [B, A, 4] (build_model's).

    targets: per image ``{"boxes": [N_i, 4] x1y1x2y2 pixels, "labels": [N_i] 0-based class ids}``, or
    those packed into one [B, M, 5] tensor (shared.data.detection.pack_targets; label -1 rows are padding).

    Returns ``{"loss_classifier", "loss_box_reg", "loss"}``: cross-entropy over
    positives and hard negatives, smooth L1 over positives, their sum; each
    summed over the batch and divided by its number of positive anchors (at least 1).
    """
    if spec.model.detector == "faster_rcnn":    # its own losses (faster_rcnn.py)
        from .faster_rcnn import compute_loss as faster_rcnn_loss
        return faster_rcnn_loss(outputs, targets, spec)
    if spec.model.detector == "yolo":
        from .yolo import yolo_loss  # its own module (yolo.py), which reuses this module's target checks
        return yolo_loss(outputs, targets, spec)
    cls_logits, box_regression = _check_outputs(outputs, spec)
    batch, num_anchors, num_outputs = tf.shape(cls_logits)[0], cls_logits.shape[1], cls_logits.shape[2]
    anchors = tf.constant(task_anchors(spec), dtype=box_regression.dtype)                  # [A, 4]
    boxes, labels = _padded_targets(targets, spec, cls_logits.shape[0])                     # [B, M, 4], [B, M]

    def match_image(args):
        image_boxes, image_labels = args
        valid = image_labels >= 0
        gt_boxes, gt_labels = tf.boolean_mask(image_boxes, valid), tf.boolean_mask(image_labels, valid)
        m = match_anchors(anchors, gt_boxes, spec.loss.iou_positive, spec.loss.iou_negative)   # [A]
        # Gather each anchor's box through a dummy last row, so background anchors and images without
        # objects index something.
        safe = tf.where(m >= 0, m, tf.cast(tf.shape(gt_boxes)[0], tf.int64))
        return (m, tf.gather(tf.concat([gt_boxes, tf.ones([1, 4], gt_boxes.dtype)], 0), safe),
                tf.gather(tf.concat([gt_labels, tf.zeros([1], gt_labels.dtype)], 0), safe))

    matches, matched_boxes, matched_labels = tf.map_fn(
        match_image, (boxes, labels), fn_output_signature=(
            tf.TensorSpec([num_anchors], tf.int64), tf.TensorSpec([num_anchors, 4], boxes.dtype),
            tf.TensorSpec([num_anchors], tf.int64)))                                # [B, A], [B, A, 4], [B, A]
    positive = matches >= 0
    num_positive = tf.reduce_sum(tf.cast(positive, box_regression.dtype))
    normaliser = tf.maximum(num_positive, 1.0)

    target_deltas = encode_boxes(tf.boolean_mask(matched_boxes, positive),
                                 tf.boolean_mask(tf.broadcast_to(anchors, [batch, num_anchors, 4]), positive))
    loss_box = tf.reduce_sum(_smooth_l1(tf.boolean_mask(box_regression, positive) - target_deltas,
                                        spec.loss.smooth_l1_beta))

    # Class 0 is the background; the data set's class k is logit k + 1.
    cls_target = tf.where(positive, matched_labels + 1, tf.zeros_like(matched_labels))
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=cls_target, logits=cls_logits)     # [B, A]
    # Hard negative mining: per image, the neg_to_pos_ratio x positives background anchors of highest
    # loss. Rank by a stable descending sort (ties to the lower index, as the PyTorch twin's), on the
    # loss without its gradient: the selection is a constant of the step.
    negative = matches == BACKGROUND
    candidate_loss = tf.where(negative, tf.stop_gradient(ce), float("-inf"))
    order = tf.argsort(candidate_loss, axis=1, direction="DESCENDING", stable=True)
    rank = tf.argsort(order, axis=1)
    num_negative = spec.loss.neg_to_pos_ratio * tf.reduce_sum(tf.cast(positive, tf.int32), axis=1, keepdims=True)
    hard_negative = negative & (rank < num_negative)
    loss_cls = tf.reduce_sum(tf.where(positive | hard_negative, ce, 0.0))
    loss_classifier, loss_box_reg = loss_cls / normaliser, loss_box / normaliser
    return {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg, "loss": loss_classifier + loss_box_reg}


def _smooth_l1(diff, beta: float):
    """torch.nn.functional.smooth_l1_loss's elementwise term: 0.5 d^2 / beta below beta, |d| - beta / 2 above."""
    d = tf.abs(diff)
    return tf.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta)


def _check_outputs(outputs, spec: DetectionSpec) -> tuple:
    if not isinstance(outputs, dict) or not {"cls_logits", "box_regression"} <= set(outputs):
        keys = sorted(outputs) if isinstance(outputs, dict) else type(outputs).__name__
        raise ValueError(f"outputs: expected a dict with 'cls_logits' and 'box_regression'; received {keys}")
    cls_logits = tf.convert_to_tensor(outputs["cls_logits"])
    box_regression = tf.convert_to_tensor(outputs["box_regression"])
    a, k = spec.num_anchors, spec.model.num_classes + 1
    if cls_logits.shape.rank != 3 or tuple(cls_logits.shape[1:]) != (a, k):
        raise ValueError(f"outputs['cls_logits']: expected shape [B, {a}, {k}] ({a} anchors, {k - 1} classes and "
                         f"the background); received {cls_logits.shape.as_list()}")
    if box_regression.shape.rank != 3 or tuple(box_regression.shape[1:]) != (a, 4) \
            or not cls_logits.shape[:1].is_compatible_with(box_regression.shape[:1]):
        raise ValueError(f"outputs['box_regression']: expected shape [{cls_logits.shape[0]}, {a}, 4]; received "
                         f"{box_regression.shape.as_list()}")
    return cls_logits, box_regression


def _padded_targets(targets, spec: DetectionSpec, batch: int | None) -> tuple:
    """Per-image targets or a packed [B, M, 5] tensor -> boxes [B, M, 4] float, labels [B, M] int64 (-1: padding).

    Label and box values are checked where they are known (eagerly); inside a traced train step the
    packed array was checked when it was made (shared.data.detection.pack_targets).
    """
    num_classes = spec.model.num_classes
    if isinstance(targets, (list, tuple)):
        if batch is not None and len(targets) != batch:
            raise ValueError(f"targets: expected one per image ({batch}); received {len(targets)}")
        rows = []
        for i, t in enumerate(targets):
            if not isinstance(t, dict) or not {"boxes", "labels"} <= set(t):
                raise ValueError(f"targets[{i}]: expected a dict with 'boxes' [N, 4] and 'labels' [N]; received "
                                 f"{sorted(t) if isinstance(t, dict) else type(t).__name__}")
            boxes, labels = tf.convert_to_tensor(t["boxes"]), tf.convert_to_tensor(t["labels"])
            if boxes.shape.rank != 2 or boxes.shape[-1] != 4:
                raise ValueError(f"targets[{i}]['boxes']: expected shape [N, 4] (x1, y1, x2, y2); received shape "
                                 f"{boxes.shape.as_list()}")
            if labels.shape.as_list() != [boxes.shape[0]] or (labels.shape[0] and not labels.dtype.is_integer):
                raise ValueError(f"targets[{i}]['labels']: expected {boxes.shape[0]} integer class ids (one per "
                                 f"box); received shape {labels.shape.as_list()}, dtype {labels.dtype.name}")
            if tf.executing_eagerly() and labels.shape[0] and (tf.reduce_min(labels) < 0
                                                               or tf.reduce_max(labels) >= num_classes):
                raise ValueError(f"targets[{i}]['labels']: expected class ids in [0, {num_classes}); received range "
                                 f"[{int(tf.reduce_min(labels))}, {int(tf.reduce_max(labels))}]")
            rows.append(tf.concat([tf.cast(boxes, tf.float32), tf.cast(labels, tf.float32)[:, None]], 1))
        longest = max([int(r.shape[0]) for r in rows] + [1])
        packed = tf.stack([tf.pad(r, [[0, longest - int(r.shape[0])], [0, 0]], constant_values=-1.0) for r in rows])
    else:
        packed = tf.convert_to_tensor(targets)
        if packed.shape.rank != 3 or packed.shape[-1] != 5 or not packed.shape[:1].is_compatible_with([batch]):
            raise ValueError(f"targets: expected per-image dicts or a packed tensor of shape [{batch}, M, 5] "
                             f"(x1, y1, x2, y2, label); received shape {packed.shape.as_list()}")
    boxes, labels = tf.cast(packed[..., :4], tf.float32), tf.cast(tf.round(packed[..., 4]), tf.int64)
    if tf.executing_eagerly():
        if bool(tf.reduce_any((labels < -1) | (labels >= num_classes))):
            raise ValueError(f"targets: expected labels in [0, {num_classes}) (-1 for padding rows); received range "
                             f"[{int(tf.reduce_min(labels))}, {int(tf.reduce_max(labels))}]")
        empty = (labels >= 0) & ((boxes[..., 2] <= boxes[..., 0]) | (boxes[..., 3] <= boxes[..., 1]))
        if bool(tf.reduce_any(empty)):
            raise ValueError(f"targets: expected boxes with x2 > x1 and y2 > y1 (x1, y1, x2, y2 order); received "
                             f"{tf.boolean_mask(boxes, empty).numpy().tolist()}")
    return boxes, labels
