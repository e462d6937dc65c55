"""Faster R-CNN-style two-stage detector (PyTorch twin): RPN, proposals, RoIAlign head, losses, post-processing.

torchvision's ``FasterRCNN`` (``rpn.py``, ``roi_heads.py``) is the reference
for every step; the differences, all for fixed shapes and twin parity, are
stated where they happen and in shared/specs/faster_rcnn.py:

- the backbone is the SSD's (the classification twin's ResNet, extra layers,
  optional necks); the RPN has one head per anchor level (the levels differ in
  width), each a 3x3 conv + ReLU, then 1x1 convs for the objectness of each of
  the cell's anchors and their box deltas (RPN box coder weights 1, 1, 1, 1);
- proposals: per image the ``pre_nms_top_n`` anchors of highest objectness
  over all levels at once (torchvision: per level), decoded, clipped, tiny
  boxes dropped, NMS at ``rpn_nms_iou`` ranked by the logits (the sigmoid
  saturates into ties), at most ``post_nms_top_n`` kept; zero boxes fill the
  remaining slots, so ``proposals`` is always [N, P, 4];
- the RoI head pools one feature level (``rcnn.roi_level``, the finest anchor
  level by default) with the ops' ``roi_align`` (aligned=True), flattens in
  torch's (C, h, w) order, and runs two fully-connected layers (TwoMLPHead)
  and the class / class-specific box predictors (FastRCNNPredictor);
- training samples with fixed priorities (shared.specs.faster_rcnn.sampling_priority)
  instead of torch.randperm, and the RoI head runs on every candidate (the
  proposals and the ground-truth boxes) with the unsampled ones masked out of
  the loss, which has the gradient of running it on the sampled ones only.

The twin contract's ``model(x)`` has no targets, and torchvision samples RoIs
inside the model; here the training-mode outputs carry ``roi_head``, the RoI
head bound to this batch's feature map, and ``compute_loss`` runs it on the
RoIs it samples.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shared.anchors import BACKGROUND, BOX_CODER_WEIGHTS, task_anchors
from shared.specs.detection import DetectionSpec
from shared.specs.faster_rcnn import EXPORT_OUTPUT_KEYS, MAX_GT_BOXES, RPN_BOX_CODER_WEIGHTS, sampling_priority

from ..layers import Conv2d, Linear, ModuleList
from ..ops import batched_nms, decode_boxes, encode_boxes, match_anchors, roi_align
from .body import body_features, build_body, init_body
from .select import clip_to_image
from .targets import batch_normaliser, padded_targets


class RPNHead(nn.Module):
    """Per anchor level: 3x3 conv + ReLU, then 1x1 convs to A_l objectness logits and A_l x 4 box deltas."""

    def __init__(self, in_channels: list[int], anchors_per_cell: tuple[int, ...], width: int):
        super().__init__()
        widths = [width or c for c in in_channels]
        self.conv = ModuleList([Conv2d(c, w, 3, 1, 1) for c, w in zip(in_channels, widths)])
        self.cls_logits = ModuleList([Conv2d(w, a, 1, 1, 0) for w, a in zip(widths, anchors_per_cell)])
        self.bbox_pred = ModuleList([Conv2d(w, a * 4, 1, 1, 0) for w, a in zip(widths, anchors_per_cell)])
        # torchvision's RPNHead initialisation: normal(std 0.01), zero bias.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def forward(self, features: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """``objectness`` [N, A], ``rpn_box_regression`` [N, A, 4], anchors in shared.anchors' order."""
        objectness, deltas = [], []
        for f, conv, cls, box in zip(features, self.conv, self.cls_logits, self.bbox_pred):
            t = F.relu(conv(f))
            n = f.shape[0]
            # [N, A_l, H, W] -> [N, H, W, A_l]: rows in (y, x, anchor) order, shared.anchors' order.
            objectness.append(cls(t).permute(0, 2, 3, 1).reshape(n, -1))
            deltas.append(box(t).permute(0, 2, 3, 1).reshape(n, -1, 4))
        return {"objectness": torch.cat(objectness, 1), "rpn_box_regression": torch.cat(deltas, 1)}


class RoIHead(nn.Module):
    """RoIAlign on one feature level, two FC layers + ReLU, class logits and class-specific box deltas."""

    def __init__(self, in_channels: int, stride: int, spec: DetectionSpec):
        super().__init__()
        r = spec.rcnn
        self.stride, self.output_size, self.sampling_ratio = stride, r.roi_output_size, r.roi_sampling_ratio
        k = spec.model.num_classes + 1
        self.fc6 = Linear(in_channels * r.roi_output_size ** 2, r.representation_size)
        self.fc7 = Linear(r.representation_size, r.representation_size)
        self.cls_score = Linear(r.representation_size, k)
        self.bbox_pred = Linear(r.representation_size, k * 4)

    def forward(self, feature: torch.Tensor, boxes: torch.Tensor) -> dict[str, torch.Tensor]:
        """feature [N, C, H, W] (the RoI level), boxes [N, R, 4] x1y1x2y2 pixels ->
        ``cls_logits`` [N, R, K + 1] and ``box_regression`` [N, R, (K + 1) * 4] (slot 0: the background)."""
        n, r = boxes.shape[0], boxes.shape[1]
        batch_index = torch.arange(n, device=boxes.device).repeat_interleave(r)
        pooled = roi_align(feature, boxes.reshape(-1, 4), batch_index, self.output_size, 1.0 / self.stride,
                           self.sampling_ratio, True)                                 # [N * R, C, h, w]
        x = F.relu(self.fc6(pooled.flatten(1)))                                      # (C, h, w) order
        x = F.relu(self.fc7(x))
        return {"cls_logits": self.cls_score(x).reshape(n, r, -1),
                "box_regression": self.bbox_pred(x).reshape(n, r, -1)}


class FasterRCNN(nn.Module):
    """Backbone (as the SSD's), RPN over the anchor levels, RoI head on level ``spec.rcnn.roi_level``.

    Input: images [N, 3, H, W] float32. ``forward`` returns (DetectionSpec.output_keys):
    ``objectness`` [N, A], ``rpn_box_regression`` [N, A, 4], ``proposals`` [N, P, 4] (no gradient;
    zero boxes in unused slots) and, in eval mode, the RoI head on them: ``cls_logits`` [N, P, K + 1]
    and ``box_regression`` [N, P, (K + 1) * 4]. In training mode ``roi_head`` instead: the RoI head
    bound to this batch's features, boxes [N, R, 4] -> those two outputs for the RoIs.
    """

    def __init__(self, spec: DetectionSpec):
        super().__init__()
        self.spec = spec
        in_channels = build_body(self, spec)
        init_body(self)
        self.rpn = RPNHead(in_channels, spec.anchors.num_anchors_per_location, spec.rcnn.rpn_head_width)
        level = spec.rcnn.roi_level
        # The RoI level's channels and stride, which a further RoI head (the mask head) reads too.
        self.roi_channels, self.roi_stride = in_channels[level], spec.anchors.strides[level]
        self.roi_head = RoIHead(self.roi_channels, self.roi_stride, spec)
        self.register_buffer("anchors", torch.tensor(task_anchors(spec)), persistent=False)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The feature map of every anchor level, [N, C_l, H_l, W_l], fine to coarse."""
        return body_features(self, x)

    def forward_rpn(self, features: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """The RPN's raw outputs (the part the ONNX export covers, ``RPNExport``)."""
        return self.rpn(features)

    def forward_roi_head(self, features: list[torch.Tensor], boxes: torch.Tensor) -> dict[str, torch.Tensor]:
        """The RoI head on given boxes [N, R, 4]: ``cls_logits`` [N, R, K + 1], ``box_regression`` [N, R, (K+1)*4]."""
        return self.roi_head(features[self.spec.rcnn.roi_level], boxes)

    def forward_head(self, features: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-level maps -> every output (see the class docstring)."""
        return self.forward_after_rpn(features[self.spec.rcnn.roi_level], self.forward_rpn(features))

    def forward_after_rpn(self, feature: torch.Tensor, rpn: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """From the RoI level's map [N, C, H, W] and the RPN's outputs to every output: the proposals, then the
        RoI head on them (eval mode) or bound to the map (training mode). What follows an exported graph."""
        out = dict(rpn)
        out["proposals"] = generate_proposals(out["objectness"], out["rpn_box_regression"], self.anchors, self.spec)
        if self.training:
            out["roi_head"] = lambda boxes: self.roi_head(feature, boxes)
        else:
            out.update(self.roi_head(feature, out["proposals"]))
        return out

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_head(self.forward_features(x))


class RPNExport(nn.Module):
    """Images -> the RPN's raw outputs and the RoI level's map (``EXPORT_OUTPUT_KEYS``): the part of the network
    an exported graph covers. NMS (data-dependent counts) and the RoI heads after it stay in the framework, which
    finishes the outputs from these (``finish_export``)."""

    output_keys = EXPORT_OUTPUT_KEYS

    def __init__(self, model: FasterRCNN):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.model.forward_features(x)
        return {**self.model.forward_rpn(features), "roi_features": features[self.model.spec.rcnn.roi_level]}


def finish_export(model: FasterRCNN, exported: dict[str, np.ndarray], batch_size: int = 64) -> dict[str, np.ndarray]:
    """The eval-mode outputs of ``model`` from an exported graph's (``RPNExport``'s, NHWC numpy, from any backend):
    proposals and the RoI heads run here, in the framework, on the exported RoI-level map and RPN outputs."""
    missing = sorted(set(EXPORT_OUTPUT_KEYS) - set(exported))
    if missing:
        raise ValueError(f"exported: expected the export view's outputs {list(EXPORT_OUTPUT_KEYS)}; missing {missing}")
    model.eval()
    chunks: dict[str, list[np.ndarray]] = {}
    with torch.inference_mode():
        for start in range(0, len(exported["objectness"]), batch_size):
            part = {k: torch.from_numpy(np.ascontiguousarray(exported[k][start:start + batch_size]))
                    for k in EXPORT_OUTPUT_KEYS}
            feature = part.pop("roi_features").permute(0, 3, 1, 2)                  # NHWC -> torch's NCHW
            for key, value in model.forward_after_rpn(feature, part).items():
                chunks.setdefault(key, []).append(value.numpy())
    return {key: np.concatenate(parts) for key, parts in chunks.items()}




@torch.no_grad()
def generate_proposals(objectness: torch.Tensor, rpn_box_regression: torch.Tensor, anchors: torch.Tensor,
                       spec: DetectionSpec) -> torch.Tensor:
    """[N, P, 4] proposals from the RPN outputs ([N, A], [N, A, 4]) and the anchors [A, 4]; no gradient.

    Per image: the ``pre_nms_top_n`` anchors of highest objectness, decoded and clipped; boxes
    narrower or shorter than ``min_size`` dropped; NMS at ``rpn_nms_iou``; at most ``post_nms_top_n``
    kept, by objectness; zero boxes fill the rest of the P = ``post_nms_top_n`` slots.
    """
    r = spec.rcnn
    k = min(r.pre_nms_top_n, anchors.shape[0])
    out = []
    for scores, deltas in zip(objectness.detach(), rpn_box_regression.detach()):
        top, idx = scores.topk(k)
        boxes = clip_to_image(decode_boxes(deltas[idx], anchors[idx], RPN_BOX_CODER_WEIGHTS), spec)
        keep = ((boxes[:, 2] - boxes[:, 0]) >= r.min_size) & ((boxes[:, 3] - boxes[:, 1]) >= r.min_size)
        boxes, top = boxes[keep], top[keep]
        kept = batched_nms(boxes, top, torch.zeros_like(top, dtype=torch.int64), r.rpn_nms_iou, r.post_nms_top_n)
        boxes = boxes[kept]
        out.append(F.pad(boxes, (0, 0, 0, r.post_nms_top_n - boxes.shape[0])))
    return torch.stack(out)


# ---------------------------------------------------------------- training targets and losses

# Added to the priority of candidates outside the mask: above every priority (a slice of a permutation of
# up to 2**22 values), so that no key of the mask ties with one outside it; exact in float32.
UNSAMPLED_OFFSET = 2.0 ** 22


def sample(positive: torch.Tensor, negative: torch.Tensor, priority: torch.Tensor, batch_size: int,
           positive_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's BalancedPositiveNegativeSampler with a fixed order instead of randperm.

    positive, negative: [B, n] bool; priority: [n], distinct values (lower is drawn first).
    Per image: up to ``int(batch_size * positive_fraction)`` positives, then negatives up to
    ``batch_size`` in all; each the ones of lowest priority. Returns the sampled masks [B, n].
    """
    num_pos = positive.sum(1, keepdim=True).clamp(max=int(batch_size * positive_fraction))
    num_neg = negative.sum(1, keepdim=True).clamp(max=batch_size - num_pos)

    def first(mask, count):
        key = torch.where(mask, priority, priority + UNSAMPLED_OFFSET)
        rank = torch.argsort(torch.argsort(key, dim=1), dim=1)
        return mask & (rank < count)

    return first(positive, num_pos), first(negative, num_neg)


def assign_targets(candidates: torch.Tensor, valid: torch.Tensor, gt_boxes: torch.Tensor, gt_labels: torch.Tensor,
                   high: float, low: float, allow_low_quality: bool):
    """Match per image: candidates [B, n, 4] (valid [B, n]) to ground truth [B, M, 4] (labels [B, M], -1 padding).

    Returns positive [B, n], negative [B, n] (bool), the matched boxes [B, n, 4], 0-based labels [B, n] and
    ground-truth rows [B, n] (dummy values where not positive).
    """
    positives, negatives, boxes, labels, rows = [], [], [], [], []
    for b in range(candidates.shape[0]):
        keep = gt_labels[b] >= 0
        g_boxes, g_labels = gt_boxes[b][keep], gt_labels[b][keep]
        m = match_anchors(candidates[b], g_boxes, high, low, allow_low_quality)
        safe = torch.where(m >= 0, m, g_boxes.shape[0])
        positives.append(valid[b] & (m >= 0))
        negatives.append(valid[b] & (m == BACKGROUND))
        boxes.append(torch.cat([g_boxes, g_boxes.new_ones(1, 4)])[safe])
        labels.append(torch.cat([g_labels, g_labels.new_zeros(1)])[safe])
        rows.append(torch.where(m >= 0, m, 0))
    return (torch.stack(positives), torch.stack(negatives), torch.stack(boxes), torch.stack(labels),
            torch.stack(rows))


class RoISample(NamedTuple):
    """The RoIs the box head's loss was taken on, for a further head (the mask head): candidates [B, n, 4]
    (the proposals, then the ground-truth boxes), the sampled positives [B, n], their matched ground-truth rows
    [B, n] and 0-based labels [B, n] (dummy values where not positive) and the sampling priorities [n]."""

    candidates: torch.Tensor
    positive: torch.Tensor
    rows: torch.Tensor
    labels: torch.Tensor
    priority: torch.Tensor


def compute_loss(outputs: dict, targets, spec: DetectionSpec) -> dict[str, torch.Tensor]:
    """torchvision's Faster R-CNN losses on training-mode outputs (``detector_losses``, without the RoIs)."""
    return detector_losses(outputs, targets, spec)[0]


def detector_losses(outputs: dict, targets, spec: DetectionSpec) -> tuple[dict[str, torch.Tensor], RoISample]:
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
    batch, num_anchors = objectness.shape
    device = rpn_deltas.device
    anchors = torch.tensor(task_anchors(spec), dtype=rpn_deltas.dtype, device=device)
    gt_boxes, gt_labels = padded_targets(targets, spec, batch, rpn_deltas.device)
    if gt_boxes.shape[1] > MAX_GT_BOXES:
        raise ValueError(f"targets: expected at most {MAX_GT_BOXES} boxes per image; received {gt_boxes.shape[1]}")

    # RPN: anchors against the boxes (0.7 / 0.3, plus each box's best anchors), 256 sampled per image.
    every = torch.ones(batch, num_anchors, dtype=torch.bool, device=device)
    pos, neg, matched, _, _ = assign_targets(anchors.expand(batch, -1, -1), every, gt_boxes, gt_labels,
                                          r.rpn_fg_iou, r.rpn_bg_iou, True)
    priority = torch.from_numpy(sampling_priority(num_anchors, r.sampling_seed, 0)).to(device)
    pos, neg = sample(pos, neg, priority, r.rpn_batch_size, r.rpn_positive_fraction)
    sampled = pos | neg
    num_sampled = batch_normaliser(sampled.sum()).to(rpn_deltas.dtype)
    rpn_targets = encode_boxes(matched[pos], anchors.expand(batch, -1, -1)[pos], RPN_BOX_CODER_WEIGHTS)
    loss_rpn_box_reg = F.smooth_l1_loss(rpn_deltas[pos], rpn_targets, beta=r.smooth_l1_beta,
                                        reduction="sum") / num_sampled
    bce = F.binary_cross_entropy_with_logits(objectness, pos.to(objectness.dtype), reduction="none")
    loss_objectness = torch.where(sampled, bce, 0.0).sum() / num_sampled

    # RoI head: the proposals and the ground-truth boxes, IoU >= roi_fg_iou positive, the rest negative.
    candidates = torch.cat([proposals.detach(), gt_boxes], dim=1)                          # [B, P + M, 4]
    valid = ((candidates[..., 2] - candidates[..., 0]) > 0) & ((candidates[..., 3] - candidates[..., 1]) > 0)
    valid[:, proposals.shape[1]:] &= gt_labels >= 0
    pos, neg, matched, matched_labels, matched_rows = assign_targets(candidates, valid, gt_boxes, gt_labels,
                                                                     r.roi_fg_iou, r.roi_fg_iou, False)
    n = candidates.shape[1]
    priority = torch.from_numpy(sampling_priority(r.num_roi_candidates_max, r.sampling_seed, 1)[:n]).to(device)
    pos, neg = sample(pos, neg, priority, r.roi_batch_size, r.roi_positive_fraction)
    sampled = pos | neg
    num_sampled = batch_normaliser(sampled.sum()).to(rpn_deltas.dtype)
    head = roi_head(candidates)
    cls_logits, box_regression = head["cls_logits"], head["box_regression"]
    cls_target = torch.where(pos, matched_labels + 1, 0)                # class 0 is the background
    ce = F.cross_entropy(cls_logits.reshape(-1, cls_logits.shape[-1]), cls_target.reshape(-1),
                         reduction="none").reshape(batch, n)
    loss_classifier = torch.where(sampled, ce, 0.0).sum() / num_sampled
    deltas = box_regression.reshape(batch, n, -1, 4)
    true_class = torch.gather(deltas, 2, cls_target[:, :, None, None].expand(-1, -1, 1, 4))[:, :, 0]  # [B, n, 4]
    roi_targets = encode_boxes(matched[pos], candidates[pos], BOX_CODER_WEIGHTS)
    loss_box_reg = F.smooth_l1_loss(true_class[pos], roi_targets, beta=r.smooth_l1_beta,
                                    reduction="sum") / num_sampled
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
    objectness, deltas, proposals = outputs["objectness"], outputs["rpn_box_regression"], outputs["proposals"]
    a, p = spec.num_anchors, spec.rcnn.post_nms_top_n
    if objectness.ndim != 2 or objectness.shape[1] != a:
        raise ValueError(f"outputs['objectness']: expected shape [B, {a}] ({a} anchors); received "
                         f"{list(objectness.shape)}")
    if tuple(deltas.shape) != (objectness.shape[0], a, 4):
        raise ValueError(f"outputs['rpn_box_regression']: expected shape [{objectness.shape[0]}, {a}, 4]; received "
                         f"{list(deltas.shape)}")
    if tuple(proposals.shape) != (objectness.shape[0], p, 4):
        raise ValueError(f"outputs['proposals']: expected shape [{objectness.shape[0]}, {p}, 4]; received "
                         f"{list(proposals.shape)}")
    return objectness, deltas, proposals, outputs["roi_head"]


# ---------------------------------------------------------------- post-processing

def _check_outputs(outputs, spec: DetectionSpec):
    keys = ("proposals", "cls_logits", "box_regression")
    if not isinstance(outputs, dict) or not set(keys) <= set(outputs):
        got = sorted(outputs) if isinstance(outputs, dict) else type(outputs).__name__
        raise ValueError(f"outputs: expected a dict with {list(keys)} (eval-mode faster_rcnn outputs); "
                         f"received {got}")
    proposals, cls_logits, box_regression = (torch.as_tensor(outputs[k]) for k in keys)
    p, k = spec.rcnn.post_nms_top_n, spec.model.num_classes + 1
    if proposals.ndim != 3 or tuple(proposals.shape[1:]) != (p, 4):
        raise ValueError(f"outputs['proposals']: expected shape [B, {p}, 4]; received {list(proposals.shape)}")
    b = proposals.shape[0]
    if tuple(cls_logits.shape) != (b, p, k):
        raise ValueError(f"outputs['cls_logits']: expected shape [{b}, {p}, {k}] ({k - 1} classes and the "
                         f"background); received {list(cls_logits.shape)}")
    if tuple(box_regression.shape) != (b, p, k * 4):
        raise ValueError(f"outputs['box_regression']: expected shape [{b}, {p}, {k * 4}]; received "
                         f"{list(box_regression.shape)}")
    return proposals, cls_logits, box_regression


# torchvision's RoIHeads drops detections smaller than this many pixels (zero-box proposal slots among them).
MIN_DETECTION_SIZE = 1e-2


@torch.no_grad()
def postprocess(outputs, spec: DetectionSpec) -> list[dict[str, np.ndarray]]:
    """torchvision's RoIHeads.postprocess_detections: eval-mode outputs (tensors or numpy) -> detections.

    Per image (``select_detections``): softmax; each proposal's class-specific deltas decoded (coder weights
    10, 10, 5, 5) and clipped; the background dropped; scores above ``spec.postprocess.score_threshold``; boxes
    of at least 1e-2 px; NMS within each class at ``nms_iou``; the ``max_detections`` best. Returns, as the
    SSD's ``postprocess``, per image ``boxes`` float32 [D, 4], ``scores`` float32 [D], ``labels`` int64 [D].
    """
    proposals, cls_logits, box_regression = _check_outputs(outputs, spec)
    detections = []
    for props, logits, deltas in zip(proposals, cls_logits, box_regression):
        boxes, scores, labels, _ = select_detections(props, logits, deltas, spec)
        detections.append({"boxes": boxes.cpu().numpy(), "scores": scores.cpu().numpy(),
                           "labels": labels.cpu().numpy().astype(np.int64)})
    return detections


def select_detections(proposals: torch.Tensor, cls_logits: torch.Tensor, box_regression: torch.Tensor,
                      spec: DetectionSpec) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One image's detections (``postprocess``) from its proposals [P, 4], logits [P, K + 1] and deltas
    [P, (K + 1) * 4]: boxes [D, 4], scores [D], 0-based labels [D] and the proposal slot of each [D]."""
    p = spec.postprocess
    num, k = cls_logits.shape[0], cls_logits.shape[1]
    boxes = decode_boxes(box_regression.reshape(-1, 4), proposals[:, None].expand(num, k, 4).reshape(-1, 4),
                         BOX_CODER_WEIGHTS)
    boxes = clip_to_image(boxes.reshape(num, k, 4)[:, 1:], spec).reshape(-1, 4)           # background dropped
    scores = F.softmax(cls_logits, -1)[:, 1:].reshape(-1)
    labels = torch.arange(k - 1, device=boxes.device).expand(num, k - 1).reshape(-1)
    slots = torch.arange(num, device=boxes.device)[:, None].expand(num, k - 1).reshape(-1)
    keep = (scores > p.score_threshold) & ((boxes[:, 2] - boxes[:, 0]) >= MIN_DETECTION_SIZE) \
        & ((boxes[:, 3] - boxes[:, 1]) >= MIN_DETECTION_SIZE)
    boxes, scores, labels, slots = boxes[keep], scores[keep], labels[keep], slots[keep]
    kept = batched_nms(boxes, scores, labels, p.nms_iou, p.max_detections)
    return boxes[kept], scores[kept], labels[kept], slots[kept]


__all__ = ["FasterRCNN", "MIN_DETECTION_SIZE", "RPNExport", "RPNHead", "RoIHead", "RoISample", "UNSAMPLED_OFFSET",
           "assign_targets", "compute_loss", "detector_losses", "finish_export", "generate_proposals", "postprocess",
           "select_detections", "sample"]
