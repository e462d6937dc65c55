"""YOLO-style grid detector (TensorFlow / Keras 3 twin): network, target assignment, loss, post-processing.

The cell of a feature map that contains an object's centre is responsible for
it, through the one prior shape (of any level) that fits the object best
(YOLOv3's assignment). Per slot (a prior of a cell, shared/yolo.py) the heads
predict an objectness logit, K class logits (no background: objectness says
whether there is an object) and the box offsets ``(tx, ty, tw, th)``: the
centre as a sigmoid offset within the cell, the size as a log-scale factor of
the prior (shared/yolo.py states the coding). The backbone, extra layers and
necks are SSD's (model.py), so the same ``DetectorSpec`` fields build them;
layer ``name=`` strings are the PyTorch attribute paths, so every weight maps
to its canonical key (``obj_head.0.bias``). Reads line for line like
``pytorch_impl/detection/yolo.py``; the loss traces inside Keras' train step
(the batch size may be unknown there).

Outputs (``spec.output_keys``), slots in shared.anchors' order (level, row,
column, prior of the cell): ``objectness`` [N, A], ``cls_logits`` [N, A, K],
``box_regression`` [N, A, 4].
"""

from __future__ import annotations

import dataclasses
import math

import keras
import numpy as np
import tensorflow as tf

from shared.anchors import BBOX_XFORM_CLIP
from shared.specs.detection import DetectionSpec, spec_from_dict
from shared.yolo import yolo_slots

from ..layers import Conv2d, ModuleList
from .body import body_features, build_body
from .select import per_image, select_per_class
from .targets import batch_normaliser, padded_targets

# Initial objectness probability of every slot (RetinaNet's prior, focal-loss paper section 4.1): with the
# bias at logit(0.01) the many empty slots start near their target, so their summed loss does not swamp
# the few responsible ones in the first steps.
OBJECTNESS_PRIOR = 0.01


@keras.saving.register_keras_serializable("twinvision")
class YOLO(keras.Model):
    """Backbone, extra layers, optional necks, per-level objectness, class and box heads.

    Input: images [N, H, W, 3] float32 (H = W = ``spec.data.image_size``).
    ``call`` returns ``{"objectness": [N, A], "cls_logits": [N, A, K], "box_regression": [N, A, 4]}``
    with A the slots of every level in shared.anchors' order.
    """

    def __init__(self, spec: DetectionSpec, **kwargs):
        super().__init__(**kwargs)
        # The loss has data-dependent shapes (boolean masks) that XLA cannot compile; this keeps Keras'
        # jit_compile="auto" off on GPU machines too.
        self.supports_jit = False
        self.spec = spec
        m = spec.model
        in_channels = build_body(self, spec)
        self.num_classes = m.num_classes
        per_cell = spec.anchors.num_anchors_per_location
        # Heads Xavier uniform with zero bias (as SSD's), the objectness bias at the prior.
        head = {"kernel_initializer": "glorot_uniform", "bias_initializer": "zeros"}
        prior = keras.initializers.Constant(-math.log((1 - OBJECTNESS_PRIOR) / OBJECTNESS_PRIOR))
        self.obj_head = ModuleList([Conv2d(c, a, 3, 1, 1, name=str(i), kernel_initializer="glorot_uniform",
                                           bias_initializer=prior)
                                    for i, (c, a) in enumerate(zip(in_channels, per_cell))], name="obj_head")
        self.cls_head = ModuleList([Conv2d(c, a * self.num_classes, 3, 1, 1, name=str(i), **head)
                                    for i, (c, a) in enumerate(zip(in_channels, per_cell))], name="cls_head")
        self.box_head = ModuleList([Conv2d(c, a * 4, 3, 1, 1, name=str(i), **head)
                                    for i, (c, a) in enumerate(zip(in_channels, per_cell))], name="box_head")

    def forward_features(self, x, training=False) -> list:
        """The feature map of every level, [N, H_l, W_l, C_l], fine to coarse."""
        return body_features(self, x, training)

    def forward_head(self, features: list) -> dict:
        """Per-level maps -> the head outputs concatenated over levels (see the class docstring)."""
        objectness, cls_logits, box_regression = [], [], []
        for f, obj_conv, cls_conv, box_conv in zip(features, self.obj_head, self.cls_head, self.box_head):
            # [N, H, W, A_l * C] -> [N, H * W * A_l, C]: rows in (y, x, prior) order, shared.anchors' order.
            # H and W are static (the input size is fixed), so the slot count stays known when traced.
            _, h, w, _ = f.shape
            rows = h * w * self.spec.anchors.num_anchors_per_location[len(objectness)]
            objectness.append(tf.reshape(obj_conv(f), [-1, rows]))
            cls_logits.append(tf.reshape(cls_conv(f), [-1, rows, self.num_classes]))
            box_regression.append(tf.reshape(box_conv(f), [-1, rows, 4]))
        return {"objectness": tf.concat(objectness, axis=1), "cls_logits": tf.concat(cls_logits, axis=1),
                "box_regression": tf.concat(box_regression, axis=1)}

    def call(self, x, training=False):
        return self.forward_head(self.forward_features(x, training=training))

    def get_config(self):
        # The spec is the whole architecture: saving it lets `.keras` files rebuild the model in safe mode.
        return {"name": self.name, "spec": dataclasses.asdict(self.spec)}

    @classmethod
    def from_config(cls, config):
        return cls(spec_from_dict(config["spec"]), name=config.get("name", "yolo"))




def _slots(spec: DetectionSpec, dtype) -> dict:
    return {k: tf.constant(v, dtype=dtype) for k, v in yolo_slots(spec).items()}


def decode_yolo_boxes(box_regression, spec: DetectionSpec):
    """[..., A, 4] offsets (tx, ty, tw, th) -> [..., A, 4] boxes x1y1x2y2 pixels (shared/yolo.py's coding)."""
    s = _slots(spec, box_regression.dtype)
    priors, strides = s["priors"], s["strides"]
    prior_xy = (priors[:, :2] + priors[:, 2:]) * 0.5
    prior_wh = priors[:, 2:] - priors[:, :2]
    xy = prior_xy + (tf.sigmoid(box_regression[..., :2]) - 0.5) * strides[:, None]
    wh = prior_wh * tf.exp(tf.minimum(box_regression[..., 2:], BBOX_XFORM_CLIP))
    return tf.concat([xy - wh * 0.5, xy + wh * 0.5], axis=-1)


def assign_targets(boxes, labels, spec: DetectionSpec) -> dict:
    """The responsible slot of every ground-truth box, and each slot's targets.

    boxes [B, M, 4] x1y1x2y2 pixels, labels [B, M] int (-1: padding row). A box
    goes to the cell (of each level) that contains its centre, and there to the
    prior of best shape IoU (``wh`` aligned at a corner) over all levels; ties
    to the lower slot. Two boxes that pick the same slot: the later one (in
    target order) keeps it, the other is left without one.

    Returns ``gt_index`` [B, A] int64 (the box a slot is responsible for, -1
    none), ``boxes`` [B, A, 4] and ``labels`` [B, A] of that box (0 where none),
    ``deltas`` [B, A, 4] the encoded targets (sigmoid(tx), sigmoid(ty), tw, th):
    the centre's offset in its cell, in [0, 1], and the log size over the prior (0 where none).
    """
    boxes, labels = tf.convert_to_tensor(boxes), tf.cast(labels, tf.int64)
    s = _slots(spec, boxes.dtype)
    priors, strides, cells, grid = s["priors"], s["strides"], s["cells"], s["grid"]
    prior_wh = priors[:, 2:] - priors[:, :2]                                             # [A, 2]
    valid = labels >= 0                                                                  # [B, M]
    centre = (boxes[..., :2] + boxes[..., 2:]) * 0.5                                     # [B, M, 2]
    size = boxes[..., 2:] - boxes[..., :2]
    # Whether each slot's cell holds each box's centre: [B, A, M]. Compared with the cell's edges (exact
    # products of integers), not through floor(centre / stride): TensorFlow's traced division is not
    # correctly rounded (32 / 16 gave 1.9999999), which moved a centre on an edge to the other cell.
    # A cell holds [its left edge, its right edge); the first and last cells extend to -inf and +inf.
    lower = tf.where(cells == 0, -math.inf, cells * strides[:, None])                    # [A, 2]
    upper = tf.where(cells == grid - 1, math.inf, (cells + 1) * strides[:, None])
    in_cell = tf.reduce_all((centre[:, None] >= lower[None, :, None]) & (centre[:, None] < upper[None, :, None]),
                            axis=-1) & valid[:, None]
    inter = tf.reduce_prod(tf.minimum(size[:, None], prior_wh[None, :, None]), axis=-1)  # [B, A, M]
    shape_iou = inter / (tf.reduce_prod(size, axis=-1)[:, None] + tf.reduce_prod(prior_wh, axis=-1)[None, :, None]
                         - inter)
    num_slots = priors.shape[0]
    score = tf.where(in_cell, shape_iou, -1.0)
    # The first slot of best score (an explicit rule: argmax does not promise one in both frameworks).
    first = tf.range(num_slots, dtype=tf.int64)[None, :, None]
    slot = tf.reduce_min(tf.where(score == tf.reduce_max(score, axis=1, keepdims=True), first,
                                  tf.constant(num_slots, tf.int64)), axis=1)                        # [B, M]
    owns = ((slot[:, None] == tf.range(num_slots, dtype=tf.int64)[None, :, None])
            | (score > spec.yolo_loss.multi_prior_iou)) & valid[:, None]                               # [B, A, M]
    box_ids = tf.range(tf.shape(boxes, out_type=tf.int64)[1])
    # The -1 column makes the reduction defined for images with no target rows at all (M = 0).
    gt_index = tf.reduce_max(tf.concat([tf.where(owns, box_ids, tf.constant(-1, tf.int64)),
                                        -tf.ones_like(owns[..., :1], tf.int64)], axis=2), axis=2)   # [B, A]
    responsible = gt_index >= 0
    safe = tf.maximum(gt_index, 0)
    padded_boxes = tf.concat([boxes, tf.zeros_like(boxes[:, :1])], axis=1)               # a row for M = 0
    padded_labels = tf.concat([labels, tf.zeros_like(labels[:, :1])], axis=1)
    matched_boxes = tf.gather(padded_boxes, safe, batch_dims=1)
    matched_labels = tf.gather(padded_labels, safe, batch_dims=1)
    matched_boxes = tf.where(responsible[..., None], matched_boxes, 0.0)
    matched_labels = tf.where(responsible, matched_labels, tf.zeros_like(matched_labels))
    centre_m = (matched_boxes[..., :2] + matched_boxes[..., 2:]) * 0.5
    offset = centre_m / strides[:, None] - cells
    log_size = tf.math.log(tf.where(responsible[..., None], matched_boxes[..., 2:] - matched_boxes[..., :2],
                                    prior_wh) / prior_wh)
    deltas = tf.where(responsible[..., None], tf.concat([offset, log_size], axis=-1), 0.0)
    return {"gt_index": gt_index, "boxes": matched_boxes, "labels": matched_labels, "deltas": deltas}


def generalized_box_iou_loss(boxes1, boxes2, reduction: str = "none"):
    """1 - GIoU of paired [N, 4] x1y1x2y2 boxes: torchvision.ops.generalized_box_iou_loss, op for op (eps 1e-7)."""
    eps = 1e-7
    x1, y1, x2, y2 = tf.unstack(boxes1, axis=-1)
    x1g, y1g, x2g, y2g = tf.unstack(boxes2, axis=-1)
    xkis1, ykis1 = tf.maximum(x1, x1g), tf.maximum(y1, y1g)
    xkis2, ykis2 = tf.minimum(x2, x2g), tf.minimum(y2, y2g)
    # torchvision fills the intersection only where the boxes overlap (no gradient elsewhere).
    overlap = (ykis2 > ykis1) & (xkis2 > xkis1)
    intsctk = tf.where(overlap, (xkis2 - xkis1) * (ykis2 - ykis1), tf.zeros_like(x1))
    unionk = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - intsctk
    iouk = intsctk / (unionk + eps)
    xc1, yc1 = tf.minimum(x1, x1g), tf.minimum(y1, y1g)
    xc2, yc2 = tf.maximum(x2, x2g), tf.maximum(y2, y2g)
    area_c = (xc2 - xc1) * (yc2 - yc1)
    loss = 1 - (iouk - (area_c - unionk) / (area_c + eps))
    if reduction == "sum":
        return tf.reduce_sum(loss)
    if reduction == "mean":
        return tf.reduce_mean(loss) if loss.shape[0] != 0 else 0.0 * tf.reduce_sum(loss)
    if reduction != "none":
        raise ValueError(f"reduction: expected one of ['none', 'mean', 'sum']; received: {reduction!r}")
    return loss


def _pairwise_iou(a, b):
    """[B, A, M] IoU of [B, A, 4] and [B, M, 4] boxes (torchvision.ops.box_iou's formula, batched)."""
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    lt = tf.maximum(a[:, :, None, :2], b[:, None, :, :2])
    rb = tf.minimum(a[:, :, None, 2:], b[:, None, :, 2:])
    wh = tf.maximum(rb - lt, 0.0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[:, :, None] + area_b[:, None, :] - inter)


def yolo_loss(outputs: dict, targets, spec: DetectionSpec) -> dict:
    """outputs: ``objectness`` [B, A], ``cls_logits`` [B, A, K], ``box_regression`` [B, A, 4] (YOLO's).

    targets: per image ``{"boxes": [N_i, 4] x1y1x2y2 pixels, "labels": [N_i]}``, or those packed into one
    [B, M, 5] tensor (shared.data.detection.pack_targets; label -1 rows are padding).

    Returns ``{"loss_objectness", "loss_classifier", "loss_box_reg", "loss"}`` (shared.specs.detection.
    YoloLossSpec states the terms); each summed over the batch and divided by its number of responsible slots.
    """
    objectness, cls_logits, box_regression = _check_outputs(outputs, spec)
    boxes, labels = padded_targets(targets, spec, objectness.shape[0])                   # [B, M, 4], [B, M]
    boxes = tf.cast(boxes, box_regression.dtype)
    assigned = assign_targets(boxes, labels, spec)
    responsible = assigned["gt_index"] >= 0                                               # [B, A]
    normaliser = batch_normaliser(tf.reduce_sum(tf.cast(responsible, box_regression.dtype)))
    cfg = spec.yolo_loss
    predicted = decode_yolo_boxes(box_regression, spec)                                  # [B, A, 4]

    # YOLOv3's ignore rule, on the prediction without its gradient: a slot that is not responsible but
    # already predicts some object well is neither pushed up nor down.
    iou = tf.where((labels >= 0)[:, None], _pairwise_iou(tf.stop_gradient(predicted), boxes), 0.0)
    best_iou = tf.reduce_max(tf.concat([iou, tf.zeros_like(iou[..., :1])], axis=2), axis=2)   # 0 for M = 0
    ignored = ~responsible & (best_iou > cfg.ignore_iou)
    weight = tf.where(responsible, 1.0, tf.where(ignored, 0.0, cfg.noobj_weight))
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(responsible, objectness.dtype), logits=objectness)
    loss_objectness = tf.reduce_sum(bce * weight) / normaliser

    loss_classifier = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.boolean_mask(assigned["labels"], responsible),
        logits=tf.boolean_mask(cls_logits, responsible))) / normaliser
    loss_box_reg = cfg.box_weight * generalized_box_iou_loss(
        tf.boolean_mask(predicted, responsible), tf.boolean_mask(assigned["boxes"], responsible),
        reduction="sum") / normaliser
    return {"loss_objectness": loss_objectness, "loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg,
            "loss": loss_objectness + loss_classifier + loss_box_reg}


def _check_outputs(outputs, spec: DetectionSpec) -> tuple:
    keys = spec.output_keys
    if not isinstance(outputs, dict) or not set(keys) <= set(outputs):
        received = sorted(outputs) if isinstance(outputs, dict) else type(outputs).__name__
        raise ValueError(f"outputs: expected a dict with {', '.join(map(repr, keys))}; received {received}")
    objectness, cls_logits, box_regression = (tf.convert_to_tensor(outputs[k]) for k in keys)
    a, k = spec.num_anchors, spec.model.num_classes
    if objectness.shape.rank != 2 or objectness.shape[1] != a:
        raise ValueError(f"outputs['objectness']: expected shape [B, {a}] ({a} slots); received "
                         f"{objectness.shape.as_list()}")
    b = objectness.shape[0]
    if cls_logits.shape.rank != 3 or tuple(cls_logits.shape[1:]) != (a, k) \
            or not cls_logits.shape[:1].is_compatible_with([b]):
        raise ValueError(f"outputs['cls_logits']: expected shape [{b}, {a}, {k}] ({a} slots, {k} classes, no "
                         f"background); received {cls_logits.shape.as_list()}")
    if box_regression.shape.rank != 3 or tuple(box_regression.shape[1:]) != (a, 4) \
            or not box_regression.shape[:1].is_compatible_with([b]):
        raise ValueError(f"outputs['box_regression']: expected shape [{b}, {a}, 4]; received "
                         f"{box_regression.shape.as_list()}")
    return objectness, cls_logits, box_regression


def yolo_postprocess(outputs, spec: DetectionSpec) -> list[dict[str, np.ndarray]]:
    """outputs: ``objectness`` [B, A], ``cls_logits`` [B, A, K], ``box_regression`` [B, A, 4], tensors or numpy.

    Per image: class k's score is sigmoid(objectness) x softmax(cls_logits)[k];
    decode the boxes and clip them to the image; per class the slots with score
    above ``spec.postprocess.score_threshold``, at most ``topk_candidates`` of
    them; NMS within each class; the ``max_detections`` best. Returns one dict
    per image, as the SSD's postprocess: ``boxes`` float32 [D, 4] (x1, y1, x2,
    y2 pixels), ``scores`` float32 [D] descending, ``labels`` int64 [D] (0-based class ids).
    """
    objectness, cls_logits, box_regression = _check_outputs(outputs, spec)
    scores_all = tf.sigmoid(objectness)[..., None] * tf.nn.softmax(cls_logits, axis=-1)   # [B, A, K]
    return per_image(select_per_class, spec, decode_yolo_boxes(box_regression, spec), scores_all)
