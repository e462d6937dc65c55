"""The instance segmenter's loss (TensorFlow / Keras 3 twin): torchvision's Mask R-CNN losses as a fixed-key dict.

Reads line for line like ``pytorch_impl/instance_segmentation/loss.py``, whose docstring states the design.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from shared.data.instance_segmentation import pack_instance_targets
from shared.specs.instance_segmentation import InstanceSegmentationSpec

from ..detection.faster_rcnn import UNSAMPLED_OFFSET, detector_losses
from ..detection.targets import batch_normaliser
from ..ops import roi_align

LOSS_KEYS = ("loss", "loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask")


def split_targets(targets, spec: InstanceSegmentationSpec) -> tuple:
    """Training targets [B, spec.target_width] (or per image ``{"boxes", "labels", "masks"}``, torchvision's
    format, packed first) -> packed boxes [B, M, 5] and instance-id maps [B, H, W] int64
    (shared.data.instance_segmentation.training_targets' layout: 0 background, k + 1 object row k)."""
    if isinstance(targets, (list, tuple)):
        eager = [{k: np.asarray(v) for k, v in t.items()} if isinstance(t, dict) else t for t in targets]
        targets = pack_instance_targets(eager, spec)
    targets = tf.convert_to_tensor(targets, tf.float32)
    width, (h, w, _), m = spec.target_width, spec.input_shape, spec.data.max_objects
    if targets.shape.rank != 2 or targets.shape[1] != width:
        raise ValueError(f"targets: expected shape [B, {width}] ({m} packed box rows of 5, then the {h} x {w} "
                         f"instance-id map); received {targets.shape.as_list()}")
    ids = tf.cast(tf.round(tf.reshape(targets[:, m * 5:], [-1, h, w])), tf.int64)
    tf.debugging.assert_less_equal(tf.reduce_max(ids), tf.constant(m, tf.int64),
                                   message=f"targets: expected instance ids in [0, {m}] (0: background)")
    tf.debugging.assert_non_negative(ids, message=f"targets: expected instance ids in [0, {m}] (0: background)")
    return tf.reshape(targets[:, :m * 5], [-1, m, 5]), ids


def compute_loss(outputs: dict, targets, spec: InstanceSegmentationSpec) -> dict:
    """Training-mode outputs and targets [B, target_width] -> ``LOSS_KEYS``: the detector's terms, ``loss_mask``
    and their sum ``loss``."""
    if not isinstance(outputs, dict) or "mask_head" not in outputs:
        keys = sorted(outputs) if isinstance(outputs, dict) else type(outputs).__name__
        raise ValueError(f"outputs: expected the training-mode outputs with 'mask_head' (training=True); "
                         f"received {keys}")
    packed, ids = split_targets(targets, spec)
    losses, rois = detector_losses(outputs, packed, spec)
    loss_mask = mask_loss(outputs["mask_head"], rois, ids, spec)
    losses["loss_mask"] = loss_mask
    losses["loss"] = losses["loss"] + loss_mask
    return {key: losses[key] for key in LOSS_KEYS}


def mask_loss(mask_head, rois, ids, spec: InstanceSegmentationSpec):
    """Mean per-pixel BCE of the matched class's mask logits over the first ``rois_per_image`` sampled positive
    RoIs of each image (by sampling priority); 0 with a gradient path when no image has a positive."""
    m, (h, w, _) = spec.mask, spec.input_shape
    batch, n = tf.shape(rois.positive)[0], rois.positive.shape[1]
    count = min(m.rois_per_image, n)
    key = tf.where(rois.positive, rois.priority, rois.priority + UNSAMPLED_OFFSET)
    order = tf.argsort(key, axis=1)[:, :count]                                              # [B, R]
    valid = tf.gather(rois.positive, order, batch_dims=1)
    boxes = tf.gather(rois.candidates, order, batch_dims=1)
    rows = tf.gather(rois.rows, order, batch_dims=1)
    labels = tf.gather(rois.labels, order, batch_dims=1)
    logits = mask_head(boxes)                                                               # [B, R, S, S, K]
    size = logits.shape[2]
    chosen = tf.gather(logits, labels, axis=4, batch_dims=2)                                # [B, R, S, S]
    # Each object's visible mask, then each RoI's object cropped to the RoI at S x S (aligned RoIAlign).
    objects = spec.data.max_objects
    masks = tf.cast(ids[:, None] == tf.range(1, objects + 1, dtype=tf.int64)[None, :, None, None], chosen.dtype)
    masks = tf.reshape(masks, [-1, h, w, 1])
    which = tf.reshape(tf.range(batch, dtype=tf.int64)[:, None] * objects + rows, [-1])
    target = roi_align(masks, tf.stop_gradient(tf.reshape(boxes, [-1, 4])), which, size, 1.0, m.sampling_ratio, True)
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.reshape(target, [batch, count, size, size]),
                                                  logits=chosen)
    per_roi = tf.reduce_mean(bce, axis=[2, 3])
    return tf.reduce_sum(tf.where(valid, per_roi, 0.0)) / batch_normaliser(tf.reduce_sum(tf.cast(valid, tf.float32)))
