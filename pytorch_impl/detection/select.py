"""From scored boxes to one image's detections (PyTorch twin): clip to the image, per class a score cut and
the top candidates, per-class NMS, the best overall. The single-shot detectors share it; the two-stage one
clips its proposals with it.
"""

from __future__ import annotations

import numpy as np
import torch

from shared.specs.detection import DetectionSpec

from ..ops import batched_nms

def clip_to_image(boxes: torch.Tensor, spec: DetectionSpec) -> torch.Tensor:
    """[..., 4] boxes (x1, y1, x2, y2 pixels) clipped to the image."""
    h, w, _ = spec.input_shape
    return torch.stack([boxes[..., 0].clamp(0, w), boxes[..., 1].clamp(0, h), boxes[..., 2].clamp(0, w),
                        boxes[..., 3].clamp(0, h)], dim=-1)

def select_per_class(boxes: torch.Tensor, class_scores: torch.Tensor, spec: DetectionSpec) -> dict[str, np.ndarray]:
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
        score, box = score[keep], boxes[keep]
        score, idx = score.topk(min(p.topk_candidates, score.shape[0]))
        image_boxes.append(box[idx])
        image_scores.append(score)
        image_labels.append(torch.full_like(idx, label))
    image_boxes, image_scores, image_labels = torch.cat(image_boxes), torch.cat(image_scores), torch.cat(image_labels)
    keep = batched_nms(image_boxes, image_scores, image_labels, p.nms_iou, p.max_detections)
    return {"boxes": image_boxes[keep].cpu().numpy(), "scores": image_scores[keep].cpu().numpy(),
            "labels": image_labels[keep].cpu().numpy().astype(np.int64)}
