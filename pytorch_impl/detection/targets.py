"""What an SSD-style detector's loss and post-processing check first (PyTorch twin): its head outputs, and
the targets of a batch, per image or packed, as padded tensors. YOLO- and Faster R-CNN-style losses pad their
targets here too.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from shared.specs.detection import DetectionSpec

def check_outputs(outputs, spec: DetectionSpec) -> tuple[torch.Tensor, torch.Tensor]:
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

def padded_targets(targets, spec: DetectionSpec, batch: int, device) -> tuple[torch.Tensor, torch.Tensor]:
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


def batch_normaliser(count: torch.Tensor) -> torch.Tensor:
    """``max(count, 1)``: the divisor of a detection loss summed over a batch (its positive or sampled
    anchors). In a data-parallel job the count is the whole global batch's, divided by the number of workers:
    the engine averages the workers' gradients, so each worker's sum / (total / N) averages to one process's
    sum / total, and N workers train exactly as one process would. Alone, the batch's own count."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        total = count.detach().to(torch.float64).clone()
        dist.all_reduce(total)
        return (total.clamp(min=1) / dist.get_world_size()).to(count.dtype if count.is_floating_point()
                                                                 else torch.float32)
    return count.clamp(min=1)
