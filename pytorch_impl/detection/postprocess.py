"""From SSD head outputs to detections (PyTorch twin).

Step for step torchvision's ``SSD.postprocess_detections`` (the reference in
tests/test_detection_parity.py); the TensorFlow twin runs the same steps.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from shared.anchors import task_anchors
from shared.specs.detection import DetectionSpec

from ..ops import batched_nms, decode_boxes
from .loss import _check_outputs


@torch.no_grad()
def postprocess(outputs, spec: DetectionSpec) -> list[dict[str, np.ndarray]]:
    """outputs: ``cls_logits`` [B, A, K + 1] and ``box_regression`` [B, A, 4], tensors or numpy (``predict``'s).

    Per image: softmax; decode the deltas against the anchors and clip the
    boxes to the image; per class the candidates with score above
    ``spec.postprocess.score_threshold``, at most ``topk_candidates`` of them;
    NMS within each class; the ``max_detections`` best. Returns one dict per
    image: ``boxes`` float32 [D, 4] (x1, y1, x2, y2 pixels), ``scores``
    float32 [D] descending, ``labels`` int64 [D] (0-based class ids).
    """
    if spec.model.detector == "faster_rcnn":    # torchvision's RoIHeads post-processing (faster_rcnn.py)
        from .faster_rcnn import postprocess as faster_rcnn_postprocess
        return faster_rcnn_postprocess(outputs, spec)
    if spec.model.detector == "yolo":
        from .yolo import yolo_postprocess  # its own module (yolo.py)
        return yolo_postprocess(outputs, spec)
    cls_logits, box_regression = _check_outputs(outputs, spec)
    anchors = torch.tensor(task_anchors(spec), dtype=box_regression.dtype, device=box_regression.device)
    scores_all = F.softmax(cls_logits, dim=-1)
    # Logit 0 is the background: the foreground classes' scores are the rest.
    return [select_per_class(decode_boxes(deltas, anchors), scores[:, 1:], spec)
            for deltas, scores in zip(box_regression, scores_all)]


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
