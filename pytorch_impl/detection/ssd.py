"""SSD-style single-shot detector (PyTorch twin).

The backbone is the classification twin's ResNet (``forward_features`` gives
every stage's map); SSD's extra layers continue it to coarser strides; per
anchor level, one 3x3 conv predicts the class logits of each of the cell's
anchors and one the box deltas (torchvision's SSDHead). Attribute paths are
the canonical weight keys (``backbone.layer1.0.conv1.weight``,
``extras.0.0.weight``, ``cls_head.2.bias``); the Keras twin in
``tensorflow_impl/detection/ssd.py`` reads line for line alike.

The loss, ``ssd_loss``, is SSD's multibox loss as a fixed-key dict, and ``ssd_postprocess`` its
decoding and per-class NMS. torchvision.models.detection.ssd.SSD.compute_loss is the reference
(tests/test_detection_parity.py checks the two agree); the differences are
the matcher (the ops' ``match_anchors``: each box also claims the anchors it
overlaps most) and that an image's hard negatives are never positives or
ignored anchors, even when it has fewer background anchors than asked for.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shared.anchors import BACKGROUND, task_anchors
from shared.specs.detection import DetectionSpec

from ..layers import Conv2d, ModuleList
from ..ops import decode_boxes, encode_boxes, match_anchors
from .body import body_features, build_body, init_body
from .select import select_per_class
from .targets import batch_normaliser, check_outputs, padded_targets

class SSD(nn.Module):
    """Backbone, extra layers, per-level class and box heads.

    Input: images [N, 3, H, W] float32 (H = W = ``spec.data.image_size``).
    ``forward`` returns ``{"cls_logits": [N, A, num_classes + 1], "box_regression": [N, A, 4]}``
    with A the anchors of every level in shared.anchors' order (level, row,
    column, anchor of the cell) and logit 0 the background.
    """

    def __init__(self, spec: DetectionSpec):
        super().__init__()
        self.spec = spec
        m = spec.model
        in_channels = build_body(self, spec)
        self.num_outputs = m.num_classes + 1
        per_cell = spec.anchors.num_anchors_per_location
        self.cls_head = ModuleList([Conv2d(c, a * self.num_outputs, 3, 1, 1) for c, a in zip(in_channels, per_cell)])
        self.box_head = ModuleList([Conv2d(c, a * 4, 3, 1, 1) for c, a in zip(in_channels, per_cell)])
        self._init_weights()

    def _init_weights(self) -> None:
        # Extra layers and necks as the backbone (He normal, fan_out); heads as torchvision's SSD
        # (Xavier uniform, zero bias). The Keras twin passes the same initialisers.
        init_body(self)
        for m in [*self.cls_head, *self.box_head]:
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The feature map of every anchor level, [N, C_l, H_l, W_l], fine to coarse."""
        return body_features(self, x)

    def forward_head(self, features: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-level maps -> the head outputs concatenated over levels (see the class docstring)."""
        cls_logits, box_regression = [], []
        for f, cls_conv, box_conv in zip(features, self.cls_head, self.box_head):
            n = f.shape[0]
            # [N, A_l * K, H, W] -> [N, H, W, A_l * K] -> [N, H * W * A_l, K]: rows in (y, x, anchor) order,
            # shared.anchors' order. Not a layout boundary: the head's output is a list of anchors.
            cls_logits.append(cls_conv(f).permute(0, 2, 3, 1).reshape(n, -1, self.num_outputs))
            box_regression.append(box_conv(f).permute(0, 2, 3, 1).reshape(n, -1, 4))
        return {"cls_logits": torch.cat(cls_logits, dim=1), "box_regression": torch.cat(box_regression, dim=1)}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_head(self.forward_features(x))

def ssd_loss(outputs: dict[str, torch.Tensor], targets, spec: DetectionSpec) -> dict[str, torch.Tensor]:
    """outputs: ``cls_logits`` [B, A, K + 1] and ``box_regression`` [B, A, 4] (build_model's).

    targets: per image ``{"boxes": [N_i, 4] x1y1x2y2 pixels, "labels": [N_i] 0-based class ids}``, or
    those packed into one [B, M, 5] tensor (shared.data.detection.pack_targets; label -1 rows are padding).

    Returns ``{"loss_classifier", "loss_box_reg", "loss"}``: cross-entropy over
    positives and hard negatives, smooth L1 over positives, their sum; each
    summed over the batch and divided by its number of positive anchors (at least 1).
    """
    cls_logits, box_regression = check_outputs(outputs, spec)
    batch, num_anchors, num_outputs = cls_logits.shape
    anchors = torch.tensor(task_anchors(spec), dtype=box_regression.dtype, device=box_regression.device)  # [A, 4]
    boxes, labels = padded_targets(targets, spec, batch, box_regression.device)           # [B, M, 4], [B, M]
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
    normaliser = batch_normaliser(num_positive).to(box_regression.dtype)

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

@torch.no_grad()
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
    anchors = torch.tensor(task_anchors(spec), dtype=box_regression.dtype, device=box_regression.device)
    scores_all = F.softmax(cls_logits, dim=-1)
    # Logit 0 is the background: the foreground classes' scores are the rest.
    return [select_per_class(decode_boxes(deltas, anchors), scores[:, 1:], spec)
            for deltas, scores in zip(box_regression, scores_all)]
