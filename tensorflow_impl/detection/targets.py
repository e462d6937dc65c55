"""What an SSD-style detector's loss and post-processing check first (TensorFlow / Keras 3 twin): its head outputs, and
the targets of a batch, per image or packed, as padded tensors. YOLO- and Faster R-CNN-style losses pad their
targets here too.
"""

from __future__ import annotations

import tensorflow as tf

from shared.specs.detection import DetectionSpec

def check_outputs(outputs, spec: DetectionSpec) -> tuple:
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

def padded_targets(targets, spec: DetectionSpec, batch: int | None) -> tuple:
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


def batch_normaliser(count: tf.Tensor) -> tf.Tensor:
    """``max(count, 1)`` (a float tensor): the divisor of a detection loss summed over a batch (its positive or sampled
    anchors). In a data-parallel job the count is the whole global batch's, divided by the number of workers:
    the engine averages the workers' gradients, so each worker's sum / (total / N) averages to one process's
    sum / total, and N workers train exactly as one process would. Alone, the batch's own count."""
    replica = tf.distribute.get_replica_context()
    if replica is not None and replica.num_replicas_in_sync > 1:
        total = replica.all_reduce(tf.distribute.ReduceOp.SUM, tf.stop_gradient(count))
        return tf.maximum(total, 1.0) / replica.num_replicas_in_sync
    return tf.maximum(count, 1.0)
