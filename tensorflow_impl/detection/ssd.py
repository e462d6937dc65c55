"""SSD-style single-shot detector (TensorFlow / Keras 3 twin).

The backbone is the classification twin's ResNet (``forward_features`` gives
every stage's map); SSD's extra layers continue it to coarser strides; per
anchor level, one 3x3 conv predicts the class logits of each of the cell's
anchors and one the box deltas (torchvision's SSDHead). Layer ``name=``
strings are the PyTorch attribute paths, so every weight maps to its
canonical key (``backbone.layer1.0.conv1.weight``, ``extras.0.0.weight``,
``cls_head.2.bias``). Reads line for line like
``pytorch_impl/detection/ssd.py``.

The loss, ``ssd_loss``, is SSD's multibox loss as a fixed-key dict, and ``ssd_postprocess`` its
decoding and per-class NMS. torchvision.models.detection.ssd.SSD.compute_loss is the reference; this is
the PyTorch twin's computation in TF ops, eager or inside Keras' traced
train step (per-image matching runs in ``tf.map_fn``, so the batch size may
be unknown while tracing).
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from shared.anchors import BACKGROUND, task_anchors
from shared.specs.detection import DetectionSpec, spec_from_dict

from ..layers import Conv2d, ModuleList
from ..ops import decode_boxes, encode_boxes, match_anchors
from .body import body_features, build_body
from .select import per_image, select_per_class
from .targets import batch_normaliser, check_outputs, padded_targets

@keras.saving.register_keras_serializable("twinvision")
class SSD(keras.Model):
    """Backbone, extra layers, per-level class and box heads.

    Input: images [N, H, W, 3] float32 (H = W = ``spec.data.image_size``).
    ``call`` returns ``{"cls_logits": [N, A, num_classes + 1], "box_regression": [N, A, 4]}``
    with A the anchors of every level in shared.anchors' order (level, row,
    column, anchor of the cell) and logit 0 the background.
    """

    def __init__(self, spec: DetectionSpec, **kwargs):
        super().__init__(**kwargs)
        # The multibox loss has data-dependent shapes (matching, boolean masks) that XLA cannot
        # compile; this keeps Keras' jit_compile="auto" off on GPU machines too.
        self.supports_jit = False
        self.spec = spec
        m = spec.model
        in_channels = build_body(self, spec)
        self.num_outputs = m.num_classes + 1
        per_cell = spec.anchors.num_anchors_per_location
        # torchvision's SSD head initialisation: Xavier uniform, zero bias.
        head = {"kernel_initializer": "glorot_uniform", "bias_initializer": "zeros"}
        self.cls_head = ModuleList([Conv2d(c, a * self.num_outputs, 3, 1, 1, name=str(i), **head)
                                    for i, (c, a) in enumerate(zip(in_channels, per_cell))], name="cls_head")
        self.box_head = ModuleList([Conv2d(c, a * 4, 3, 1, 1, name=str(i), **head)
                                    for i, (c, a) in enumerate(zip(in_channels, per_cell))], name="box_head")

    def forward_features(self, x, training=False) -> list:
        """The feature map of every anchor level, [N, H_l, W_l, C_l], fine to coarse."""
        return body_features(self, x, training)

    def forward_head(self, features: list) -> dict:
        """Per-level maps -> the head outputs concatenated over levels (see the class docstring)."""
        cls_logits, box_regression = [], []
        for f, cls_conv, box_conv in zip(features, self.cls_head, self.box_head):
            # [N, H, W, A_l * K] -> [N, H * W * A_l, K]: rows in (y, x, anchor) order, shared.anchors' order.
            # H and W are static (the input size is fixed), so the anchor count stays known when traced.
            _, h, w, _ = f.shape
            rows = h * w * self.spec.anchors.num_anchors_per_location[len(cls_logits)]
            cls_logits.append(tf.reshape(cls_conv(f), [-1, rows, self.num_outputs]))
            box_regression.append(tf.reshape(box_conv(f), [-1, rows, 4]))
        return {"cls_logits": tf.concat(cls_logits, axis=1), "box_regression": tf.concat(box_regression, axis=1)}

    def call(self, x, training=False):
        return self.forward_head(self.forward_features(x, training=training))

    def get_config(self):
        # The spec is the whole architecture: saving it lets `.keras` files rebuild the model in safe mode.
        return {"name": self.name, "spec": dataclasses.asdict(self.spec)}

    @classmethod
    def from_config(cls, config):
        return cls(spec_from_dict(config["spec"]), name=config.get("name", "ssd"))

def ssd_loss(outputs: dict, targets, spec: DetectionSpec) -> dict:
    """outputs: ``cls_logits`` [B, A, K + 1] and ``box_regression`` [B, A, 4] (build_model's).

    targets: per image ``{"boxes": [N_i, 4] x1y1x2y2 pixels, "labels": [N_i] 0-based class ids}``, or
    those packed into one [B, M, 5] tensor (shared.data.detection.pack_targets; label -1 rows are padding).

    Returns ``{"loss_classifier", "loss_box_reg", "loss"}``: cross-entropy over
    positives and hard negatives, smooth L1 over positives, their sum; each
    summed over the batch and divided by its number of positive anchors (at least 1).
    """
    cls_logits, box_regression = check_outputs(outputs, spec)
    batch, num_anchors = tf.shape(cls_logits)[0], cls_logits.shape[1]
    anchors = tf.constant(task_anchors(spec), dtype=box_regression.dtype)                  # [A, 4]
    boxes, labels = padded_targets(targets, spec, cls_logits.shape[0])                     # [B, M, 4], [B, M]

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
    normaliser = batch_normaliser(num_positive)

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

def ssd_postprocess(outputs, spec: DetectionSpec) -> list[dict[str, np.ndarray]]:
    """outputs: ``cls_logits`` [B, A, K + 1] and ``box_regression`` [B, A, 4], tensors or numpy (``predict``'s).

    Per image: softmax; decode the deltas against the anchors and clip the
    boxes to the image; per class the candidates with score above
    ``spec.postprocess.score_threshold``, at most ``topk_candidates`` of them;
    NMS within each class; the ``max_detections`` best. Returns one dict per
    image: ``boxes`` float32 [D, 4] (x1, y1, x2, y2 pixels), ``scores``
    float32 [D] descending, ``labels`` int64 [D] (0-based class ids).
    """
    cls_logits, box_regression = check_outputs(outputs, spec)
    return per_image(_ssd_image, spec, box_regression, cls_logits)

def _ssd_image(deltas: tf.Tensor, logits: tf.Tensor, spec: DetectionSpec):
    anchors = tf.constant(task_anchors(spec), dtype=deltas.dtype)
    # Logit 0 is the background: the foreground classes' scores are the rest.
    return select_per_class(decode_boxes(deltas, anchors), tf.nn.softmax(logits, axis=-1)[:, 1:], spec)
