"""From scored boxes to one image's detections (TensorFlow / Keras 3 twin): clip to the image, per class a score cut and
the top candidates, per-class NMS, the best overall. The single-shot detectors share it; the two-stage one
clips its proposals with it. Each image's step is one traced graph (``per_image``): run op by op in eager
mode, the per-class loop cost about 20 ms an image, four times the network's own forward pass on 2 cores.
"""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np
import tensorflow as tf

from shared.specs.detection import DetectionSpec

from ..ops import batched_nms

def per_image(image_fn: Callable, spec: DetectionSpec, *batched,
              keys: tuple[str, ...] = ("boxes", "scores", "labels")) -> list[dict[str, np.ndarray]]:
    """``image_fn(*one image's slices, spec=spec) -> (boxes, scores, labels)`` on every image of the
    batched tensors, as one graph traced per (function, spec) and reused; per image the numpy dict
    ``boxes`` float32 [D, 4], ``scores`` float32 [D], ``labels`` int64 [D] (``keys``: the names of what
    ``image_fn`` returns, where it returns more, such as the instance segmenter's masks)."""
    traced = _traced(image_fn, spec)
    detections = []
    for slices in zip(*(tf.unstack(t) for t in batched)):
        found = {key: value.numpy() for key, value in zip(keys, traced(*slices))}
        found["labels"] = found["labels"].astype(np.int64)
        detections.append(found)
    return detections

@functools.lru_cache(maxsize=32)
def _traced(image_fn: Callable, spec: DetectionSpec):
    # Every image of a batch has the same shapes, so each (function, spec) traces once.
    return tf.function(functools.partial(image_fn, spec=spec), reduce_retracing=True)

def clip_to_image(boxes: tf.Tensor, spec: DetectionSpec) -> tf.Tensor:
    """[..., 4] boxes (x1, y1, x2, y2 pixels) clipped to the image."""
    h, w, _ = spec.input_shape
    return tf.stack([tf.clip_by_value(boxes[..., 0], 0.0, float(w)), tf.clip_by_value(boxes[..., 1], 0.0, float(h)),
                     tf.clip_by_value(boxes[..., 2], 0.0, float(w)), tf.clip_by_value(boxes[..., 3], 0.0, float(h))],
                    axis=-1)

def select_per_class(boxes: tf.Tensor, class_scores: tf.Tensor, spec: DetectionSpec):
    """One image's detections from its decoded boxes [A, 4] and foreground class scores [A, K]: the
    boxes clipped to the image; per class the candidates scoring above ``score_threshold``, at most
    ``topk_candidates`` of them; NMS within each class; the ``max_detections`` best, as tensors
    (boxes [D, 4], scores [D], labels int64 [D]). The single-shot detectors share it (the SSD- and the
    YOLO-style one differ only in how they score a box)."""
    p = spec.postprocess
    boxes = clip_to_image(boxes, spec)
    image_boxes, image_scores, image_labels = [], [], []
    for label in range(spec.model.num_classes):
        score = class_scores[:, label]
        keep = score > p.score_threshold
        score, box = tf.boolean_mask(score, keep), tf.boolean_mask(boxes, keep)
        score, idx = tf.math.top_k(score, k=tf.minimum(p.topk_candidates, tf.size(score)))
        image_boxes.append(tf.gather(box, idx))
        image_scores.append(score)
        image_labels.append(tf.fill(tf.shape(idx), tf.constant(label, tf.int64)))
    image_boxes, image_scores, image_labels = tf.concat(image_boxes, 0), tf.concat(image_scores, 0), \
        tf.concat(image_labels, 0)
    keep = batched_nms(image_boxes, image_scores, image_labels, p.nms_iou, p.max_detections)
    return tf.gather(image_boxes, keep), tf.gather(image_scores, keep), tf.gather(image_labels, keep)


# Names one framework alone has, with the reason (the structure test reads this).
FRAMEWORK_SPECIFIC = {
    "per_image": "TF runs each image's selection as one traced graph (tf.function); torch's eager ops are fast "
                 "enough one by one",
}
