"""SSD's multibox loss (PyTorch twin), as a fixed-key dict.

torchvision.models.detection.ssd.SSD.compute_loss is the reference
(tests/test_detection_parity.py checks the two agree); the differences are
the matcher (the ops' ``match_anchors``: each box also claims the anchors it
overlaps most) and that an image's hard negatives are never positives or
ignored anchors, even when it has fewer background anchors than asked for.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from shared.anchors import BACKGROUND, task_anchors
from shared.specs.detection import DetectionSpec

from ..ops import encode_boxes, match_anchors


def compute_loss(outputs: dict[str, torch.Tensor], targets, spec: DetectionSpec) -> dict[str, torch.Tensor]:
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
    batch, num_anchors, num_outputs = cls_logits.shape
    anchors = torch.tensor(task_anchors(spec), dtype=box_regression.dtype, device=box_regression.device)  # [A, 4]
    boxes, labels = _padded_targets(targets, spec, batch, box_regression.device)           # [B, M, 4], [B, M]
    matches, matched_boxes, matched_labels = [], [], []
    for b in range(batch):
        valid = labels[b] >= 0
        gt_boxes, gt_labels = boxes[b][valid], labels[b][valid]
        m = match_anchors(anchors, gt_boxes, spec.loss.iou_positive, spec.loss.iou_negative)       # [A]
        # Gather each anchor's box through a dummy last row, so background anchors and images without
        # objects index something.
        safe = torch.where(m >= 0, m, gt_boxes.shape[0])
        matches.append(m)
        matched_boxes.append(torch.cat([gt_boxes, gt_boxes.new_ones(1, 4)])[safe])
        matched_labels.append(torch.cat([gt_labels, gt_labels.new_zeros(1)])[safe])
    matches, matched_boxes, matched_labels = torch.stack(matches), torch.stack(matched_boxes), \
        torch.stack(matched_labels)                                                 # [B, A], [B, A, 4], [B, A]
    positive = matches >= 0
    num_positive = positive.sum()
    normaliser = num_positive.clamp(min=1).to(box_regression.dtype)

    target_deltas = encode_boxes(matched_boxes[positive], anchors.expand(batch, num_anchors, 4)[positive])
    loss_box = F.smooth_l1_loss(box_regression[positive], target_deltas, beta=spec.loss.smooth_l1_beta,
                                reduction="sum")

    # Class 0 is the background; the data set's class k is logit k + 1.
    cls_target = torch.where(positive, matched_labels + 1, 0)
    ce = F.cross_entropy(cls_logits.reshape(-1, num_outputs), cls_target.reshape(-1),
                         reduction="none").reshape(batch, num_anchors)
    # Hard negative mining: per image, the neg_to_pos_ratio x positives background anchors of highest
    # loss. Rank by a stable descending sort (ties to the lower index, as tf.argsort's), on the detached
    # loss: the selection is a constant of the step.
    negative = matches == BACKGROUND
    candidate_loss = torch.where(negative, ce.detach(), float("-inf"))
    order = torch.sort(candidate_loss, dim=1, descending=True, stable=True).indices
    rank = torch.argsort(order, dim=1)
    num_negative = spec.loss.neg_to_pos_ratio * positive.sum(dim=1, keepdim=True)
    hard_negative = negative & (rank < num_negative)
    loss_cls = torch.where(positive | hard_negative, ce, 0.0).sum()
    loss_classifier, loss_box_reg = loss_cls / normaliser, loss_box / normaliser
    return {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg, "loss": loss_classifier + loss_box_reg}


def _check_outputs(outputs, spec: DetectionSpec) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(outputs, dict) or not {"cls_logits", "box_regression"} <= set(outputs):
        keys = sorted(outputs) if isinstance(outputs, dict) else type(outputs).__name__
        raise ValueError(f"outputs: expected a dict with 'cls_logits' and 'box_regression'; received {keys}")
    cls_logits, box_regression = torch.as_tensor(outputs["cls_logits"]), torch.as_tensor(outputs["box_regression"])
    a, k = spec.num_anchors, spec.model.num_classes + 1
    if cls_logits.ndim != 3 or tuple(cls_logits.shape[1:]) != (a, k):
        raise ValueError(f"outputs['cls_logits']: expected shape [B, {a}, {k}] ({a} anchors, {k - 1} classes and "
                         f"the background); received {list(cls_logits.shape)}")
    if tuple(box_regression.shape) != (cls_logits.shape[0], a, 4):
        raise ValueError(f"outputs['box_regression']: expected shape [{cls_logits.shape[0]}, {a}, 4]; received "
                         f"{list(box_regression.shape)}")
    return cls_logits, box_regression


def _padded_targets(targets, spec: DetectionSpec, batch: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image targets or a packed [B, M, 5] tensor -> boxes [B, M, 4] float, labels [B, M] int64 (-1: padding)."""
    num_classes = spec.model.num_classes
    if isinstance(targets, (list, tuple)):
        if len(targets) != batch:
            raise ValueError(f"targets: expected one per image ({batch}); received {len(targets)}")
        rows = []
        for i, t in enumerate(targets):
            if not isinstance(t, dict) or not {"boxes", "labels"} <= set(t):
                raise ValueError(f"targets[{i}]: expected a dict with 'boxes' [N, 4] and 'labels' [N]; received "
                                 f"{sorted(t) if isinstance(t, dict) else type(t).__name__}")
            boxes, labels = torch.as_tensor(t["boxes"]), torch.as_tensor(t["labels"])
            if boxes.ndim != 2 or boxes.shape[-1] != 4:
                raise ValueError(f"targets[{i}]['boxes']: expected shape [N, 4] (x1, y1, x2, y2); received shape "
                                 f"{list(boxes.shape)}")
            if labels.shape != (boxes.shape[0],) or (labels.numel() and labels.is_floating_point()):
                raise ValueError(f"targets[{i}]['labels']: expected {boxes.shape[0]} integer class ids (one per "
                                 f"box); received shape {list(labels.shape)}, dtype {labels.dtype}")
            if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
                raise ValueError(f"targets[{i}]['labels']: expected class ids in [0, {num_classes}); received range "
                                 f"[{int(labels.min())}, {int(labels.max())}]")
            rows.append(torch.cat([boxes.to(device, torch.float32), labels.to(device, torch.float32)[:, None]], 1))
        longest = max([r.shape[0] for r in rows] + [1])
        packed = torch.stack([F.pad(r, (0, 0, 0, longest - r.shape[0]), value=-1.0) for r in rows])
    else:
        packed = torch.as_tensor(targets, device=device)
        if packed.ndim != 3 or packed.shape[0] != batch or packed.shape[-1] != 5:
            raise ValueError(f"targets: expected per-image dicts or a packed tensor of shape [{batch}, M, 5] "
                             f"(x1, y1, x2, y2, label); received shape {list(packed.shape)}")
    boxes, labels = packed[..., :4].to(torch.float32), packed[..., 4].round().to(torch.int64)
    if ((labels < -1) | (labels >= num_classes)).any():
        raise ValueError(f"targets: expected labels in [0, {num_classes}) (-1 for padding rows); received range "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    empty = (labels >= 0) & ((boxes[..., 2] <= boxes[..., 0]) | (boxes[..., 3] <= boxes[..., 1]))
    if empty.any():
        raise ValueError(f"targets: expected boxes with x2 > x1 and y2 > y1 (x1, y1, x2, y2 order); received "
                         f"{boxes[empty].tolist()}")
    return boxes, labels
