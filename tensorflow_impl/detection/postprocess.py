"""From SSD head outputs to detections (TensorFlow twin).

Step for step torchvision's ``SSD.postprocess_detections``, as the PyTorch
twin runs it, in TF ops.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from shared.anchors import task_anchors
from shared.specs.detection import DetectionSpec

from ..ops import batched_nms, decode_boxes
from .loss import _check_outputs


def postprocess(outputs, spec: DetectionSpec) -> list[dict[str, np.ndarray]]:
    """outputs: ``cls_logits`` [B, A, K + 1] and ``box_regression`` [B, A, 4], tensors or numpy (``predict``'s).

    Per image: softmax; decode the deltas against the anchors and clip the
    boxes to the image; per class the candidates with score above
    ``spec.postprocess.score_threshold``, at most ``topk_candidates`` of them;
    NMS within each class; the ``max_detections`` best. Returns one dict per
    image: ``boxes`` float32 [D, 4] (x1, y1, x2, y2 pixels), ``scores``
    float32 [D] descending, ``labels`` int64 [D] (0-based class ids). Runs eagerly.
    """
    if spec.model.detector == "faster_rcnn":    # torchvision's RoIHeads post-processing (faster_rcnn.py)
        from .faster_rcnn import postprocess as faster_rcnn_postprocess
        return faster_rcnn_postprocess(outputs, spec)
    if spec.model.detector == "yolo":
        from .yolo import yolo_postprocess  # its own module (yolo.py)
        return yolo_postprocess(outputs, spec)
    cls_logits, box_regression = _check_outputs(outputs, spec)
    anchors = tf.constant(task_anchors(spec), dtype=box_regression.dtype)
    scores_all = tf.nn.softmax(cls_logits, axis=-1)
    # Logit 0 is the background: the foreground classes' scores are the rest.
    return [select_per_class(decode_boxes(deltas, anchors), scores[:, 1:], spec)
            for deltas, scores in zip(tf.unstack(box_regression), tf.unstack(scores_all))]


def clip_to_image(boxes: tf.Tensor, spec: DetectionSpec) -> tf.Tensor:
    """[..., 4] boxes (x1, y1, x2, y2 pixels) clipped to the image."""
    h, w, _ = spec.input_shape
    return tf.stack([tf.clip_by_value(boxes[..., 0], 0.0, float(w)), tf.clip_by_value(boxes[..., 1], 0.0, float(h)),
                     tf.clip_by_value(boxes[..., 2], 0.0, float(w)), tf.clip_by_value(boxes[..., 3], 0.0, float(h))],
                    axis=-1)


def select_per_class(boxes: tf.Tensor, class_scores: tf.Tensor, spec: DetectionSpec) -> dict[str, np.ndarray]:
    """One image's detections from its decoded boxes [A, 4] and foreground class scores [A, K]: the
    boxes clipped to the image; per class the candidates scoring above ``score_threshold``, at most
    ``topk_candidates`` of them; NMS within each class; the ``max_detections`` best. The single-shot
    detectors share it (the SSD- and the YOLO-style one differ only in how they score a box)."""
    p = spec.postprocess
    boxes = clip_to_image(boxes, spec)
    image_boxes, image_scores, image_labels = [], [], []
    for label in range(spec.model.num_classes):
        score = class_scores[:, label]
        keep = score > p.score_threshold
        score, box = tf.boolean_mask(score, keep), tf.boolean_mask(boxes, keep)
        score, idx = tf.math.top_k(score, k=min(p.topk_candidates, int(score.shape[0])))
        image_boxes.append(tf.gather(box, idx))
        image_scores.append(score)
        image_labels.append(tf.fill(tf.shape(idx), tf.constant(label, tf.int64)))
    image_boxes, image_scores, image_labels = tf.concat(image_boxes, 0), tf.concat(image_scores, 0), \
        tf.concat(image_labels, 0)
    keep = batched_nms(image_boxes, image_scores, image_labels, p.nms_iou, p.max_detections)
    return {"boxes": tf.gather(image_boxes, keep).numpy(), "scores": tf.gather(image_scores, keep).numpy(),
            "labels": tf.gather(image_labels, keep).numpy().astype(np.int64)}
