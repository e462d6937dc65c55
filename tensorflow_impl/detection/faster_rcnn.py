"""Faster R-CNN-style two-stage detector (TensorFlow / Keras 3 twin): RPN, proposals, RoIAlign head, losses,
post-processing.

Reads line for line like ``pytorch_impl/detection/faster_rcnn.py``, whose
docstring states the design (torchvision's ``FasterRCNN`` as the reference,
fixed proposal counts, fixed sampling priorities, the RoI head run on every
candidate and masked). Layer ``name=`` strings are the PyTorch attribute
paths (``rpn.conv.0.weight``, ``roi_head.fc6.weight``). The RoIAlign is the
ops' hand-written twin of torchvision's; its [K, h, w, C] output is put in
torch's (C, h, w) order before the flatten, so ``roi_head.fc6`` has the
canonical row order. Per-image steps run in ``tf.map_fn``, so everything
works eagerly and inside Keras' traced train step.
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from shared.anchors import BACKGROUND, BOX_CODER_WEIGHTS, task_anchors
from shared.specs.detection import DetectionSpec, spec_from_dict
from shared.specs.faster_rcnn import EXPORT_OUTPUT_KEYS, MAX_GT_BOXES, RPN_BOX_CODER_WEIGHTS, sampling_priority

from ..layers import Conv2d, Linear, ModuleList
from ..ops import batched_nms, decode_boxes, encode_boxes, match_anchors, roi_align
from .body import body_features, build_body
from .select import clip_to_image, per_image
from .targets import batch_normaliser, padded_targets


class RPNHead(keras.layers.Layer):
    """Per anchor level: 3x3 conv + ReLU, then 1x1 convs to A_l objectness logits and A_l x 4 box deltas."""

    def __init__(self, in_channels: list[int], anchors_per_cell: tuple[int, ...], width: int, **kwargs):
        super().__init__(**kwargs)
        widths = [width or c for c in in_channels]
        # torchvision's RPNHead initialisation: normal(std 0.01), zero bias.
        init = {"kernel_initializer": keras.initializers.RandomNormal(stddev=0.01), "bias_initializer": "zeros"}
        self.anchors_per_cell = anchors_per_cell
        self.conv = ModuleList([Conv2d(c, w, 3, 1, 1, name=str(i), **init)
                                for i, (c, w) in enumerate(zip(in_channels, widths))], name="conv")
        self.cls_logits = ModuleList([Conv2d(w, a, 1, 1, 0, name=str(i), **init)
                                      for i, (w, a) in enumerate(zip(widths, anchors_per_cell))], name="cls_logits")
        self.bbox_pred = ModuleList([Conv2d(w, a * 4, 1, 1, 0, name=str(i), **init)
                                     for i, (w, a) in enumerate(zip(widths, anchors_per_cell))], name="bbox_pred")

    def call(self, features: list) -> dict:
        """``objectness`` [N, A], ``rpn_box_regression`` [N, A, 4], anchors in shared.anchors' order."""
        objectness, deltas = [], []
        for f, conv, cls, box, a in zip(features, self.conv, self.cls_logits, self.bbox_pred, self.anchors_per_cell):
            t = tf.nn.relu(conv(f))
            # [N, H, W, A_l] -> [N, H * W * A_l]: (y, x, anchor) order; H and W are static.
            rows = f.shape[1] * f.shape[2] * a
            objectness.append(tf.reshape(cls(t), [-1, rows]))
            deltas.append(tf.reshape(box(t), [-1, rows, 4]))
        return {"objectness": tf.concat(objectness, 1), "rpn_box_regression": tf.concat(deltas, 1)}


class RoIHead(keras.layers.Layer):
    """RoIAlign on one feature level, two FC layers + ReLU, class logits and class-specific box deltas."""

    def __init__(self, in_channels: int, stride: int, spec: DetectionSpec, **kwargs):
        super().__init__(**kwargs)
        r = spec.rcnn
        self.stride, self.output_size, self.sampling_ratio = stride, r.roi_output_size, r.roi_sampling_ratio
        self.flat = in_channels * r.roi_output_size ** 2
        k = spec.model.num_classes + 1
        self.fc6 = Linear(self.flat, r.representation_size, name="fc6")
        self.fc7 = Linear(r.representation_size, r.representation_size, name="fc7")
        self.cls_score = Linear(r.representation_size, k, name="cls_score")
        self.bbox_pred = Linear(r.representation_size, k * 4, name="bbox_pred")

    def call(self, feature, boxes) -> dict:
        """feature [N, H, W, C] (the RoI level), boxes [N, R, 4] x1y1x2y2 pixels ->
        ``cls_logits`` [N, R, K + 1] and ``box_regression`` [N, R, (K + 1) * 4] (slot 0: the background)."""
        n, r = tf.shape(boxes)[0], tf.shape(boxes)[1]
        batch_index = tf.repeat(tf.range(n), r)
        pooled = roi_align(feature, tf.reshape(boxes, [-1, 4]), batch_index, self.output_size, 1.0 / self.stride,
                           self.sampling_ratio, True)                                 # [N * R, h, w, C]
        # Flatten in torch's (C, h, w) order, so fc6's weight is the canonical one.
        x = tf.nn.relu(self.fc6(tf.reshape(tf.transpose(pooled, [0, 3, 1, 2]), [-1, self.flat])))
        x = tf.nn.relu(self.fc7(x))
        return {"cls_logits": tf.reshape(self.cls_score(x), [n, r, -1]),
                "box_regression": tf.reshape(self.bbox_pred(x), [n, r, -1])}


@keras.saving.register_keras_serializable("twinvision")
class FasterRCNN(keras.Model):
    """Backbone (as the SSD's), RPN over the anchor levels, RoI head on level ``spec.rcnn.roi_level``.

    Input: images [N, H, W, 3] float32. ``call`` returns (DetectionSpec.output_keys):
    ``objectness`` [N, A], ``rpn_box_regression`` [N, A, 4], ``proposals`` [N, P, 4] (no gradient;
    zero boxes in unused slots) and, with ``training=False``, the RoI head on them: ``cls_logits``
    [N, P, K + 1] and ``box_regression`` [N, P, (K + 1) * 4]. With ``training=True`` ``roi_head``
    instead: the RoI head bound to this batch's features, boxes [N, R, 4] -> those two outputs.
    """

    def __init__(self, spec: DetectionSpec, **kwargs):
        super().__init__(**kwargs)
        # NMS and matching have data-dependent shapes that XLA cannot compile.
        self.supports_jit = False
        self.spec = spec
        in_channels = build_body(self, spec)
        self.rpn = RPNHead(in_channels, spec.anchors.num_anchors_per_location, spec.rcnn.rpn_head_width, name="rpn")
        level = spec.rcnn.roi_level
        # The RoI level's channels and stride, which a further RoI head (the mask head) reads too.
        self.roi_channels, self.roi_stride = in_channels[level], spec.anchors.strides[level]
        self.roi_head = RoIHead(self.roi_channels, self.roi_stride, spec, name="roi_head")
        self.anchors = tf.constant(task_anchors(spec))

    def forward_features(self, x, training=False) -> list:
        """The feature map of every anchor level, [N, H_l, W_l, C_l], fine to coarse."""
        return body_features(self, x, training)

    def forward_rpn(self, features: list) -> dict:
        """The RPN's raw outputs (the part the ONNX export covers, ``RPNExport``)."""
        return self.rpn(features)

    def forward_roi_head(self, features: list, boxes) -> dict:
        """The RoI head on given boxes [N, R, 4]: ``cls_logits`` [N, R, K + 1], ``box_regression`` [N, R, (K+1)*4]."""
        return self.roi_head(features[self.spec.rcnn.roi_level], boxes)

    def forward_head(self, features: list, training=False) -> dict:
        """Per-level maps -> every output (see the class docstring)."""
        return self.forward_after_rpn(features[self.spec.rcnn.roi_level], self.forward_rpn(features), training)

    def forward_after_rpn(self, feature, rpn: dict, training=False) -> dict:
        """From the RoI level's map [N, H, W, C] and the RPN's outputs to every output: the proposals, then the
        RoI head on them (``training=False``) or bound to the map (``training=True``). What follows an exported
        graph."""
        out = dict(rpn)
        out["proposals"] = generate_proposals(out["objectness"], out["rpn_box_regression"], self.anchors, self.spec)
        if training:
            out["roi_head"] = lambda boxes: self.roi_head(feature, boxes)
        else:
            out.update(self.roi_head(feature, out["proposals"]))
        return out

    def call(self, x, training=False):
        return self.forward_head(self.forward_features(x, training=training), training=training)

    def get_config(self):
        return {"name": self.name, "spec": dataclasses.asdict(self.spec)}

    @classmethod
    def from_config(cls, config):
        return cls(spec_from_dict(config["spec"]), name=config.get("name", "faster_rcnn"))


class RPNExport(keras.Model):
    """Images -> the RPN's raw outputs and the RoI level's map (``EXPORT_OUTPUT_KEYS``): the part of the network
    an exported graph covers. NMS (data-dependent counts) and the RoI heads after it stay in the framework, which
    finishes the outputs from these (``finish_export``). A Keras model, so Keras' own SavedModel export (and
    TFLite from it) takes it as it takes a whole model."""

    output_keys = EXPORT_OUTPUT_KEYS

    def __init__(self, model: FasterRCNN, **kwargs):
        super().__init__(name=kwargs.pop("name", "rpn_export"), **kwargs)
        self.model = model

    def call(self, x, training=False) -> dict:
        features = self.model.forward_features(x, training=training)
        return {**self.model.forward_rpn(features), "roi_features": features[self.model.spec.rcnn.roi_level]}


def finish_export(model: FasterRCNN, exported: dict[str, np.ndarray], batch_size: int = 64) -> dict[str, np.ndarray]:
    """The eval-mode outputs of ``model`` from an exported graph's (``RPNExport``'s, NHWC numpy, from any backend):
    proposals and the RoI heads run here, in the framework (one traced function per model), on the exported
    RoI-level map and RPN outputs."""
    missing = sorted(set(EXPORT_OUTPUT_KEYS) - set(exported))
    if missing:
        raise ValueError(f"exported: expected the export view's outputs {list(EXPORT_OUTPUT_KEYS)}; missing {missing}")
    finish = _FINISH.get(model)
    if finish is None:
        finish = _FINISH[model] = tf.function(lambda feature, rpn: model.forward_after_rpn(feature, rpn),
                                              reduce_retracing=True)
    chunks: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(exported["objectness"]), batch_size):
        part = {k: tf.constant(exported[k][start:start + batch_size]) for k in EXPORT_OUTPUT_KEYS}
        feature = part.pop("roi_features")
        for key, value in finish(feature, part).items():
            chunks.setdefault(key, []).append(value.numpy())
    return {key: np.concatenate(parts) for key, parts in chunks.items()}


_FINISH: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def generate_proposals(objectness, rpn_box_regression, anchors, spec: DetectionSpec):
    """[N, P, 4] proposals from the RPN outputs ([N, A], [N, A, 4]) and the anchors [A, 4]; no gradient.

    Per image: the ``pre_nms_top_n`` anchors of highest objectness, decoded and clipped; boxes
    narrower or shorter than ``min_size`` dropped; NMS at ``rpn_nms_iou``; at most ``post_nms_top_n``
    kept, by objectness; zero boxes fill the rest of the P = ``post_nms_top_n`` slots.
    """
    r = spec.rcnn
    anchors = tf.convert_to_tensor(anchors, tf.float32)
    k = min(r.pre_nms_top_n, int(anchors.shape[0]))

    def one_image(args):
        scores, deltas = args
        top, idx = tf.math.top_k(scores, k=k)
        boxes = clip_to_image(decode_boxes(tf.gather(deltas, idx), tf.gather(anchors, idx), RPN_BOX_CODER_WEIGHTS), spec)
        keep = ((boxes[:, 2] - boxes[:, 0]) >= r.min_size) & ((boxes[:, 3] - boxes[:, 1]) >= r.min_size)
        boxes, top = tf.boolean_mask(boxes, keep), tf.boolean_mask(top, keep)
        kept = batched_nms(boxes, top, tf.zeros_like(top, dtype=tf.int64), r.rpn_nms_iou, r.post_nms_top_n)
        boxes = tf.gather(boxes, kept)
        boxes = tf.pad(boxes, [[0, r.post_nms_top_n - tf.shape(boxes)[0]], [0, 0]])
        return tf.ensure_shape(boxes, [r.post_nms_top_n, 4])

    return tf.stop_gradient(tf.map_fn(one_image, (tf.stop_gradient(objectness), tf.stop_gradient(rpn_box_regression)),
                                      fn_output_signature=tf.TensorSpec([r.post_nms_top_n, 4], tf.float32)))


# ---------------------------------------------------------------- training targets and losses

# Added to the priority of candidates outside the mask: above every priority (a slice of a permutation of
# up to 2**22 values), so that no key of the mask ties with one outside it; exact in float32.
UNSAMPLED_OFFSET = 2.0 ** 22


def sample(positive, negative, priority, batch_size: int, positive_fraction: float) -> tuple:
    """torchvision's BalancedPositiveNegativeSampler with a fixed order instead of randperm.

    positive, negative: [B, n] bool; priority: [n], distinct values (lower is drawn first).
    Per image: up to ``int(batch_size * positive_fraction)`` positives, then negatives up to
    ``batch_size`` in all; each the ones of lowest priority. Returns the sampled masks [B, n].
    """
    num_pos = tf.minimum(tf.reduce_sum(tf.cast(positive, tf.int32), 1, keepdims=True),
                         int(batch_size * positive_fraction))
    num_neg = tf.minimum(tf.reduce_sum(tf.cast(negative, tf.int32), 1, keepdims=True), batch_size - num_pos)

    def first(mask, count):
        key = tf.where(mask, priority, priority + UNSAMPLED_OFFSET)
        rank = tf.argsort(tf.argsort(key, axis=1), axis=1)
        return mask & (rank < count)

    return first(positive, num_pos), first(negative, num_neg)


def assign_targets(candidates, valid, gt_boxes, gt_labels, high: float, low: float, allow_low_quality: bool):
    """Match per image: candidates [B, n, 4] (valid [B, n]) to ground truth [B, M, 4] (labels [B, M], -1 padding).

    Returns positive [B, n], negative [B, n] (bool), the matched boxes [B, n, 4], 0-based labels [B, n] and
    ground-truth rows [B, n] (dummy values where not positive).
    """
    def one_image(args):
        cands, ok, boxes, labels = args
        keep = labels >= 0
        g_boxes, g_labels = tf.boolean_mask(boxes, keep), tf.boolean_mask(labels, keep)
        m = match_anchors(cands, g_boxes, high, low, allow_low_quality)
        safe = tf.where(m >= 0, m, tf.cast(tf.shape(g_boxes)[0], tf.int64))
        return (ok & (m >= 0), ok & (m == BACKGROUND),
                tf.gather(tf.concat([g_boxes, tf.ones([1, 4], g_boxes.dtype)], 0), safe),
                tf.gather(tf.concat([g_labels, tf.zeros([1], g_labels.dtype)], 0), safe),
                tf.where(m >= 0, m, tf.zeros_like(m)))

    n = candidates.shape[1]
    return tf.map_fn(one_image, (candidates, valid, gt_boxes, gt_labels), fn_output_signature=(
        tf.TensorSpec([n], tf.bool), tf.TensorSpec([n], tf.bool), tf.TensorSpec([n, 4], tf.float32),
        tf.TensorSpec([n], tf.int64), tf.TensorSpec([n], tf.int64)))


def _smooth_l1_sum(diff, beta: float):
    d = tf.abs(diff)
    return tf.reduce_sum(tf.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta))


class RoISample(NamedTuple):
    """The RoIs the box head's loss was taken on, for a further head (the mask head): candidates [B, n, 4]
    (the proposals, then the ground-truth boxes), the sampled positives [B, n], their matched ground-truth rows
    [B, n] and 0-based labels [B, n] (dummy values where not positive) and the sampling priorities [n]."""

    candidates: tf.Tensor
    positive: tf.Tensor
    rows: tf.Tensor
    labels: tf.Tensor
    priority: tf.Tensor


def compute_loss(outputs: dict, targets, spec: DetectionSpec) -> dict:
    """torchvision's Faster R-CNN losses on training-mode outputs (``detector_losses``, without the RoIs)."""
    return detector_losses(outputs, targets, spec)[0]


def detector_losses(outputs: dict, targets, spec: DetectionSpec) -> tuple[dict, RoISample]:
    """torchvision's Faster R-CNN losses on training-mode outputs, and the RoIs sampled for the box head.

    targets: per image ``{"boxes", "labels"}`` or packed [B, M, 5] (as the SSD's ``compute_loss``).
    Returns ``{"loss", "loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}``:
    binary cross-entropy over the sampled anchors (mean), smooth L1 (beta ``rcnn.smooth_l1_beta``)
    over the sampled positive anchors / sampled anchors; cross-entropy over the sampled RoIs (mean),
    smooth L1 of the true class's deltas over the positive RoIs / sampled RoIs; and their sum. With them the
    ``RoISample`` the box head's loss was taken on (the mask head's loss picks its RoIs from it).
    """
    objectness, rpn_deltas, proposals, roi_head = _check_training_outputs(outputs, spec)
    r = spec.rcnn
    batch, num_anchors = tf.shape(objectness)[0], objectness.shape[1]
    anchors = tf.constant(task_anchors(spec))
    gt_boxes, gt_labels = padded_targets(targets, spec, objectness.shape[0])
    if gt_boxes.shape[1] is not None and gt_boxes.shape[1] > MAX_GT_BOXES:
        raise ValueError(f"targets: expected at most {MAX_GT_BOXES} boxes per image; received {gt_boxes.shape[1]}")

    # RPN: anchors against the boxes (0.7 / 0.3, plus each box's best anchors), 256 sampled per image.
    all_anchors = tf.broadcast_to(anchors, [batch, num_anchors, 4])
    every = tf.ones([batch, num_anchors], tf.bool)
    pos, neg, matched, _, _ = assign_targets(all_anchors, every, gt_boxes, gt_labels, r.rpn_fg_iou, r.rpn_bg_iou, True)
    priority = tf.constant(sampling_priority(num_anchors, r.sampling_seed, 0))
    pos, neg = sample(pos, neg, priority, r.rpn_batch_size, r.rpn_positive_fraction)
    sampled = pos | neg
    num_sampled = batch_normaliser(tf.reduce_sum(tf.cast(sampled, tf.float32)))
    rpn_targets = encode_boxes(tf.boolean_mask(matched, pos), tf.boolean_mask(all_anchors, pos),
                               RPN_BOX_CODER_WEIGHTS)
    loss_rpn_box_reg = _smooth_l1_sum(tf.boolean_mask(rpn_deltas, pos) - rpn_targets, r.smooth_l1_beta) / num_sampled
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(pos, objectness.dtype), logits=objectness)
    loss_objectness = tf.reduce_sum(tf.where(sampled, bce, 0.0)) / num_sampled

    # RoI head: the proposals and the ground-truth boxes, IoU >= roi_fg_iou positive, the rest negative.
    candidates = tf.concat([tf.stop_gradient(proposals), gt_boxes], axis=1)               # [B, P + M, 4]
    valid = ((candidates[..., 2] - candidates[..., 0]) > 0) & ((candidates[..., 3] - candidates[..., 1]) > 0)
    valid &= tf.concat([tf.ones_like(proposals[..., 0], tf.bool), gt_labels >= 0], axis=1)
    pos, neg, matched, matched_labels, matched_rows = assign_targets(candidates, valid, gt_boxes, gt_labels,
                                                                     r.roi_fg_iou, r.roi_fg_iou, False)
    n = tf.shape(candidates)[1]
    priority = tf.constant(sampling_priority(r.num_roi_candidates_max, r.sampling_seed, 1))[:n]
    pos, neg = sample(pos, neg, priority, r.roi_batch_size, r.roi_positive_fraction)
    sampled = pos | neg
    num_sampled = batch_normaliser(tf.reduce_sum(tf.cast(sampled, tf.float32)))
    head = roi_head(candidates)
    cls_logits, box_regression = head["cls_logits"], head["box_regression"]
    cls_target = tf.where(pos, matched_labels + 1, tf.zeros_like(matched_labels))   # class 0 is the background
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=cls_target, logits=cls_logits)   # [B, n]
    loss_classifier = tf.reduce_sum(tf.where(sampled, ce, 0.0)) / num_sampled
    deltas = tf.reshape(box_regression, [batch, n, -1, 4])
    true_class = tf.gather(deltas, cls_target, batch_dims=2)                                     # [B, n, 4]
    roi_targets = encode_boxes(tf.boolean_mask(matched, pos), tf.boolean_mask(candidates, pos), BOX_CODER_WEIGHTS)
    loss_box_reg = _smooth_l1_sum(tf.boolean_mask(true_class, pos) - roi_targets, r.smooth_l1_beta) / num_sampled
    losses = {"loss": loss_objectness + loss_rpn_box_reg + loss_classifier + loss_box_reg,
              "loss_objectness": loss_objectness, "loss_rpn_box_reg": loss_rpn_box_reg,
              "loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}
    return losses, RoISample(candidates, pos, matched_rows, matched_labels, priority)


def _check_training_outputs(outputs, spec: DetectionSpec):
    need = {"objectness", "rpn_box_regression", "proposals", "roi_head"}
    if not isinstance(outputs, dict) or not need <= set(outputs):
        keys = sorted(outputs) if isinstance(outputs, dict) else type(outputs).__name__
        raise ValueError(f"outputs: expected the faster_rcnn training-mode outputs {sorted(need)} (model.train()); "
                         f"received {keys}")
    objectness, deltas, proposals = (tf.convert_to_tensor(outputs[k]) for k in
                                     ("objectness", "rpn_box_regression", "proposals"))
    a, p = spec.num_anchors, spec.rcnn.post_nms_top_n
    if objectness.shape.rank != 2 or objectness.shape[1] != a:
        raise ValueError(f"outputs['objectness']: expected shape [B, {a}] ({a} anchors); received "
                         f"{objectness.shape.as_list()}")
    if deltas.shape.rank != 3 or tuple(deltas.shape[1:]) != (a, 4):
        raise ValueError(f"outputs['rpn_box_regression']: expected shape [{objectness.shape[0]}, {a}, 4]; received "
                         f"{deltas.shape.as_list()}")
    if proposals.shape.rank != 3 or tuple(proposals.shape[1:]) != (p, 4):
        raise ValueError(f"outputs['proposals']: expected shape [{objectness.shape[0]}, {p}, 4]; received "
                         f"{proposals.shape.as_list()}")
    return objectness, deltas, proposals, outputs["roi_head"]


# ---------------------------------------------------------------- post-processing

def _check_outputs(outputs, spec: DetectionSpec):
    keys = ("proposals", "cls_logits", "box_regression")
    if not isinstance(outputs, dict) or not set(keys) <= set(outputs):
        got = sorted(outputs) if isinstance(outputs, dict) else type(outputs).__name__
        raise ValueError(f"outputs: expected a dict with {list(keys)} (eval-mode faster_rcnn outputs); "
                         f"received {got}")
    proposals, cls_logits, box_regression = (tf.convert_to_tensor(outputs[k]) for k in keys)
    p, k = spec.rcnn.post_nms_top_n, spec.model.num_classes + 1
    if proposals.shape.rank != 3 or tuple(proposals.shape[1:]) != (p, 4):
        raise ValueError(f"outputs['proposals']: expected shape [B, {p}, 4]; received {proposals.shape.as_list()}")
    b = proposals.shape[0]
    if tuple(cls_logits.shape) != (b, p, k):
        raise ValueError(f"outputs['cls_logits']: expected shape [{b}, {p}, {k}] ({k - 1} classes and the "
                         f"background); received {cls_logits.shape.as_list()}")
    if tuple(box_regression.shape) != (b, p, k * 4):
        raise ValueError(f"outputs['box_regression']: expected shape [{b}, {p}, {k * 4}]; received "
                         f"{box_regression.shape.as_list()}")
    return proposals, cls_logits, box_regression


# torchvision's RoIHeads drops detections smaller than this many pixels (zero-box proposal slots among them).
MIN_DETECTION_SIZE = 1e-2


def postprocess(outputs, spec: DetectionSpec) -> list[dict[str, np.ndarray]]:
    """torchvision's RoIHeads.postprocess_detections: eval-mode outputs (tensors or numpy) -> detections.

    Per image (``select_detections``): softmax; each proposal's class-specific deltas decoded (coder weights
    10, 10, 5, 5) and clipped; the background dropped; scores above ``spec.postprocess.score_threshold``; boxes
    of at least 1e-2 px; NMS within each class at ``nms_iou``; the ``max_detections`` best. Returns, as the
    SSD's ``postprocess``, per image ``boxes`` float32 [D, 4], ``scores`` float32 [D], ``labels`` int64 [D].
    """
    proposals, cls_logits, box_regression = _check_outputs(outputs, spec)
    return per_image(_postprocess_image, spec, proposals, cls_logits, box_regression)


def _postprocess_image(props, logits, deltas, spec: DetectionSpec):
    return select_detections(props, logits, deltas, spec)[:3]


def select_detections(proposals, cls_logits, box_regression, spec: DetectionSpec) -> tuple:
    """One image's detections (``postprocess``) from its proposals [P, 4], logits [P, K + 1] and deltas
    [P, (K + 1) * 4]: boxes [D, 4], scores [D], 0-based labels [D] and the proposal slot of each [D]."""
    p = spec.postprocess
    num, k = cls_logits.shape[0], cls_logits.shape[1]
    boxes = decode_boxes(tf.reshape(box_regression, [-1, 4]),
                         tf.reshape(tf.broadcast_to(proposals[:, None], [num, k, 4]), [-1, 4]), BOX_CODER_WEIGHTS)
    boxes = tf.reshape(clip_to_image(tf.reshape(boxes, [num, k, 4])[:, 1:], spec), [-1, 4])     # background dropped
    scores = tf.reshape(tf.nn.softmax(cls_logits, -1)[:, 1:], [-1])
    labels = tf.reshape(tf.broadcast_to(tf.range(k - 1, dtype=tf.int64), [num, k - 1]), [-1])
    slots = tf.reshape(tf.broadcast_to(tf.range(num, dtype=tf.int64)[:, None], [num, k - 1]), [-1])
    keep = (scores > p.score_threshold) & ((boxes[:, 2] - boxes[:, 0]) >= MIN_DETECTION_SIZE) \
        & ((boxes[:, 3] - boxes[:, 1]) >= MIN_DETECTION_SIZE)
    boxes, scores, labels, slots = (tf.boolean_mask(t, keep) for t in (boxes, scores, labels, slots))
    kept = batched_nms(boxes, scores, labels, p.nms_iou, p.max_detections)
    return tf.gather(boxes, kept), tf.gather(scores, kept), tf.gather(labels, kept), tf.gather(slots, kept)


__all__ = ["FasterRCNN", "MIN_DETECTION_SIZE", "RPNExport", "RPNHead", "RoIHead", "RoISample", "UNSAMPLED_OFFSET",
           "assign_targets", "compute_loss", "detector_losses", "finish_export", "generate_proposals", "postprocess",
           "select_detections", "sample"]
