"""YOLO-style grid detector (PyTorch twin): network, target assignment, loss, post-processing.

The cell of a feature map that contains an object's centre is responsible for
it, through the one prior shape (of any level) that fits the object best
(YOLOv3's assignment). Per slot (a prior of a cell, shared/yolo.py) the heads
predict an objectness logit, K class logits (no background: objectness says
whether there is an object) and the box offsets ``(tx, ty, tw, th)``: the
centre as a sigmoid offset within the cell, the size as a log-scale factor of
the prior (shared/yolo.py states the coding). The backbone, extra layers and
necks are SSD's (model.py), so the same ``DetectorSpec`` fields build them;
attribute paths are the canonical weight keys (``obj_head.0.bias``). The Keras
twin in ``tensorflow_impl/detection/yolo.py`` reads line for line alike.

Outputs (``spec.output_keys``), slots in shared.anchors' order (level, row,
column, prior of the cell): ``objectness`` [N, A], ``cls_logits`` [N, A, K],
``box_regression`` [N, A, 4].
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from shared.anchors import BBOX_XFORM_CLIP
from shared.specs.detection import DetectionSpec
from shared.yolo import yolo_slots

from ..layers import Conv2d, ModuleList
from .body import body_features, build_body, init_body
from .select import select_per_class
from .targets import batch_normaliser, padded_targets

# Initial objectness probability of every slot (RetinaNet's prior, focal-loss paper section 4.1): with the
# bias at logit(0.01) the many empty slots start near their target, so their summed loss does not swamp
# the few responsible ones in the first steps.
OBJECTNESS_PRIOR = 0.01


class YOLO(nn.Module):
    """Backbone, extra layers, optional necks, per-level objectness, class and box heads.

    Input: images [N, 3, H, W] float32 (H = W = ``spec.data.image_size``).
    ``forward`` returns ``{"objectness": [N, A], "cls_logits": [N, A, K], "box_regression": [N, A, 4]}``
    with A the slots of every level in shared.anchors' order.
    """

    def __init__(self, spec: DetectionSpec):
        super().__init__()
        self.spec = spec
        m = spec.model
        in_channels = build_body(self, spec)
        self.num_classes = m.num_classes
        per_cell = spec.anchors.num_anchors_per_location
        self.obj_head = ModuleList([Conv2d(c, a, 3, 1, 1) for c, a in zip(in_channels, per_cell)])
        self.cls_head = ModuleList([Conv2d(c, a * self.num_classes, 3, 1, 1) for c, a in zip(in_channels, per_cell)])
        self.box_head = ModuleList([Conv2d(c, a * 4, 3, 1, 1) for c, a in zip(in_channels, per_cell)])
        self._init_weights()

    def _init_weights(self) -> None:
        # Extra layers and necks as the backbone (He normal, fan_out); heads Xavier uniform with zero bias
        # (as SSD's), the objectness bias at the prior. The Keras twin passes the same initialisers.
        init_body(self)
        for m in [*self.obj_head, *self.cls_head, *self.box_head]:
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
        for m in self.obj_head:
            nn.init.constant_(m.bias, -math.log((1 - OBJECTNESS_PRIOR) / OBJECTNESS_PRIOR))

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The feature map of every level, [N, C_l, H_l, W_l], fine to coarse."""
        return body_features(self, x)

    def forward_head(self, features: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-level maps -> the head outputs concatenated over levels (see the class docstring)."""
        objectness, cls_logits, box_regression = [], [], []
        for f, obj_conv, cls_conv, box_conv in zip(features, self.obj_head, self.cls_head, self.box_head):
            n = f.shape[0]
            # [N, A_l * C, H, W] -> [N, H, W, A_l * C] -> [N, H * W * A_l, C]: rows in (y, x, prior) order,
            # shared.anchors' order. Not a layout boundary: the head's output is a list of slots.
            objectness.append(obj_conv(f).permute(0, 2, 3, 1).reshape(n, -1))
            cls_logits.append(cls_conv(f).permute(0, 2, 3, 1).reshape(n, -1, self.num_classes))
            box_regression.append(box_conv(f).permute(0, 2, 3, 1).reshape(n, -1, 4))
        return {"objectness": torch.cat(objectness, dim=1), "cls_logits": torch.cat(cls_logits, dim=1),
                "box_regression": torch.cat(box_regression, dim=1)}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_head(self.forward_features(x))




def _slots(spec: DetectionSpec, like: torch.Tensor) -> dict[str, torch.Tensor]:
    return {k: torch.tensor(v, dtype=like.dtype, device=like.device) for k, v in yolo_slots(spec).items()}


def decode_yolo_boxes(box_regression: torch.Tensor, spec: DetectionSpec) -> torch.Tensor:
    """[..., A, 4] offsets (tx, ty, tw, th) -> [..., A, 4] boxes x1y1x2y2 pixels (shared/yolo.py's coding)."""
    s = _slots(spec, box_regression)
    priors, strides = s["priors"], s["strides"]
    prior_xy = (priors[:, :2] + priors[:, 2:]) * 0.5
    prior_wh = priors[:, 2:] - priors[:, :2]
    xy = prior_xy + (torch.sigmoid(box_regression[..., :2]) - 0.5) * strides[:, None]
    wh = prior_wh * torch.exp(box_regression[..., 2:].clamp(max=BBOX_XFORM_CLIP))
    return torch.cat([xy - wh * 0.5, xy + wh * 0.5], dim=-1)


def assign_targets(boxes: torch.Tensor, labels: torch.Tensor, spec: DetectionSpec) -> dict[str, torch.Tensor]:
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
    s = _slots(spec, boxes)
    priors, strides, cells, grid = s["priors"], s["strides"], s["cells"], s["grid"]
    prior_wh = priors[:, 2:] - priors[:, :2]                                             # [A, 2]
    valid = labels >= 0                                                                  # [B, M]
    centre = (boxes[..., :2] + boxes[..., 2:]) * 0.5                                     # [B, M, 2]
    size = boxes[..., 2:] - boxes[..., :2]
    # Whether each slot's cell holds each box's centre: [B, A, M]. Compared with the cell's edges (exact
    # products of integers), not through floor(centre / stride): TensorFlow's traced division is not
    # correctly rounded (32 / 16 gave 1.9999999), which moved a centre on an edge to the other cell.
    # A cell holds [its left edge, its right edge); the first and last cells extend to -inf and +inf.
    lower = torch.where(cells == 0, -math.inf, cells * strides[:, None])                 # [A, 2]
    upper = torch.where(cells == grid - 1, math.inf, (cells + 1) * strides[:, None])
    in_cell = ((centre[:, None] >= lower[None, :, None]) & (centre[:, None] < upper[None, :, None])).all(dim=-1) \
        & valid[:, None]
    inter = torch.minimum(size[:, None], prior_wh[None, :, None]).prod(dim=-1)           # [B, A, M]
    shape_iou = inter / (size.prod(dim=-1)[:, None] + prior_wh.prod(dim=-1)[None, :, None] - inter)
    num_slots, num_boxes = priors.shape[0], boxes.shape[1]
    score = torch.where(in_cell, shape_iou, -1.0)
    # The first slot of best score (an explicit rule: argmax does not promise one in both frameworks).
    first = torch.arange(num_slots, device=boxes.device)[None, :, None]
    slot = torch.where(score == score.amax(dim=1, keepdim=True), first, num_slots).amin(dim=1)   # [B, M]
    owns = ((slot[:, None] == torch.arange(num_slots, device=boxes.device)[None, :, None])
            | (score > spec.yolo_loss.multi_prior_iou)) & valid[:, None]
    box_ids = torch.arange(num_boxes, device=boxes.device)
    gt_index = torch.where(owns, box_ids, -1).amax(dim=2) if num_boxes else \
        torch.full((boxes.shape[0], num_slots), -1, dtype=torch.int64, device=boxes.device)    # [B, A]
    responsible = gt_index >= 0
    safe = gt_index.clamp(min=0)
    matched_boxes = torch.gather(boxes, 1, safe[..., None].expand(-1, -1, 4)) if num_boxes else \
        boxes.new_zeros(boxes.shape[0], num_slots, 4)
    matched_labels = torch.gather(labels, 1, safe) if num_boxes else safe
    matched_boxes = torch.where(responsible[..., None], matched_boxes, 0.0)
    matched_labels = torch.where(responsible, matched_labels, 0)
    centre_m = (matched_boxes[..., :2] + matched_boxes[..., 2:]) * 0.5
    offset = centre_m / strides[:, None] - cells
    log_size = torch.log(torch.where(responsible[..., None], matched_boxes[..., 2:] - matched_boxes[..., :2],
                                     prior_wh) / prior_wh)
    deltas = torch.where(responsible[..., None], torch.cat([offset, log_size], dim=-1), 0.0)
    return {"gt_index": gt_index, "boxes": matched_boxes, "labels": matched_labels, "deltas": deltas}


def generalized_box_iou_loss(boxes1: torch.Tensor, boxes2: torch.Tensor, reduction: str = "none") -> torch.Tensor:
    """1 - GIoU of paired [N, 4] x1y1x2y2 boxes: torchvision.ops.generalized_box_iou_loss (eps 1e-7)."""
    return torchvision.ops.generalized_box_iou_loss(boxes1, boxes2, reduction=reduction)


def _pairwise_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[B, A, M] IoU of [B, A, 4] and [B, M, 4] boxes (torchvision.ops.box_iou's formula, batched)."""
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    lt = torch.maximum(a[:, :, None, :2], b[:, None, :, :2])
    rb = torch.minimum(a[:, :, None, 2:], b[:, None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[:, :, None] + area_b[:, None, :] - inter)


def yolo_loss(outputs: dict[str, torch.Tensor], targets, spec: DetectionSpec) -> dict[str, torch.Tensor]:
    """outputs: ``objectness`` [B, A], ``cls_logits`` [B, A, K], ``box_regression`` [B, A, 4] (YOLO's).

    targets: per image ``{"boxes": [N_i, 4] x1y1x2y2 pixels, "labels": [N_i]}``, or those packed into one
    [B, M, 5] tensor (shared.data.detection.pack_targets; label -1 rows are padding).

    Returns ``{"loss_objectness", "loss_classifier", "loss_box_reg", "loss"}`` (shared.specs.detection.
    YoloLossSpec states the terms); each summed over the batch and divided by its number of responsible slots.
    """
    objectness, cls_logits, box_regression = _check_outputs(outputs, spec)
    batch = objectness.shape[0]
    boxes, labels = padded_targets(targets, spec, batch, box_regression.device)          # [B, M, 4], [B, M]
    boxes = boxes.to(box_regression.dtype)
    assigned = assign_targets(boxes, labels, spec)
    responsible = assigned["gt_index"] >= 0                                               # [B, A]
    normaliser = batch_normaliser(responsible.sum()).to(box_regression.dtype)
    cfg = spec.yolo_loss
    predicted = decode_yolo_boxes(box_regression, spec)                                  # [B, A, 4]

    # YOLOv3's ignore rule, on the prediction without its gradient: a slot that is not responsible but
    # already predicts some object well is neither pushed up nor down.
    iou = torch.where((labels >= 0)[:, None], _pairwise_iou(predicted.detach(), boxes), 0.0)
    best_iou = iou.amax(dim=2) if iou.shape[2] else torch.zeros_like(objectness)
    ignored = ~responsible & (best_iou > cfg.ignore_iou)
    weight = torch.where(responsible, 1.0, torch.where(ignored, 0.0, cfg.noobj_weight))
    bce = F.binary_cross_entropy_with_logits(objectness, responsible.to(objectness.dtype), reduction="none")
    loss_objectness = (bce * weight).sum() / normaliser

    loss_classifier = F.cross_entropy(cls_logits[responsible], assigned["labels"][responsible],
                                      reduction="sum") / normaliser
    loss_box_reg = cfg.box_weight * generalized_box_iou_loss(predicted[responsible], assigned["boxes"][responsible],
                                                             reduction="sum") / normaliser
    return {"loss_objectness": loss_objectness, "loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg,
            "loss": loss_objectness + loss_classifier + loss_box_reg}


def _check_outputs(outputs, spec: DetectionSpec) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    keys = spec.output_keys
    if not isinstance(outputs, dict) or not set(keys) <= set(outputs):
        received = sorted(outputs) if isinstance(outputs, dict) else type(outputs).__name__
        raise ValueError(f"outputs: expected a dict with {', '.join(map(repr, keys))}; received {received}")
    objectness, cls_logits, box_regression = (torch.as_tensor(outputs[k]) for k in keys)
    a, k = spec.num_anchors, spec.model.num_classes
    if objectness.ndim != 2 or objectness.shape[1] != a:
        raise ValueError(f"outputs['objectness']: expected shape [B, {a}] ({a} slots); received "
                         f"{list(objectness.shape)}")
    b = objectness.shape[0]
    if tuple(cls_logits.shape) != (b, a, k):
        raise ValueError(f"outputs['cls_logits']: expected shape [{b}, {a}, {k}] ({a} slots, {k} classes, no "
                         f"background); received {list(cls_logits.shape)}")
    if tuple(box_regression.shape) != (b, a, 4):
        raise ValueError(f"outputs['box_regression']: expected shape [{b}, {a}, 4]; received "
                         f"{list(box_regression.shape)}")
    return objectness, cls_logits, box_regression


@torch.no_grad()
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
    scores_all = torch.sigmoid(objectness)[..., None] * F.softmax(cls_logits, dim=-1)     # [B, A, K]
    return [select_per_class(boxes, scores, spec)
            for boxes, scores in zip(decode_yolo_boxes(box_regression, spec), scores_all)]
