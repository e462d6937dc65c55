"""From the instance segmenter's eval-mode outputs to instances (PyTorch twin): the detector's detections
(``faster_rcnn.select_detections``), each with the mask of its class from its proposal slot, pasted into the
image and thresholded (torchvision's ``paste_masks_in_image``)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from shared.specs.instance_segmentation import InstanceSegmentationSpec

from ..detection.faster_rcnn import _check_outputs, select_detections


def paste_masks(probabilities: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Masks [D, S, S] (probabilities), each predicted in the frame of its box [D, 4] (x1y1x2y2 pixels), as
    image-sized maps [D, H, W]: at each pixel centre, the mask sampled bilinearly (cell c of the mask spans
    [c, c + 1] / S of the box), zero outside the mask's grid, so a mask fades out over its border cells as
    torchvision's one-pixel zero padding makes it do. ``F.grid_sample`` with ``align_corners=False`` is exactly
    this sampling; the TensorFlow twin writes it out and is tested against it."""
    d = boxes.shape[0]
    h, w = size
    if d == 0:
        return probabilities.new_zeros(0, h, w)
    x = (torch.arange(w, dtype=boxes.dtype, device=boxes.device) + 0.5)[None]                  # [1, W]
    y = (torch.arange(h, dtype=boxes.dtype, device=boxes.device) + 0.5)[None]
    gx = 2 * (x - boxes[:, :1]) / (boxes[:, 2:3] - boxes[:, :1]) - 1                          # [D, W]
    gy = 2 * (y - boxes[:, 1:2]) / (boxes[:, 3:4] - boxes[:, 1:2]) - 1                         # [D, H]
    grid = torch.stack([gx[:, None, :].expand(d, h, w), gy[:, :, None].expand(d, h, w)], dim=-1)
    return F.grid_sample(probabilities[:, None], grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)[:, 0]


@torch.no_grad()
def postprocess(outputs, spec: InstanceSegmentationSpec) -> list[dict[str, np.ndarray]]:
    """Eval-mode outputs (tensors or numpy) -> per image ``boxes`` float32 [D, 4], ``scores`` float32 [D],
    ``labels`` int64 [D] (as the detector's ``postprocess``) and ``masks`` bool [D, H, W]: the sigmoid of the
    detection's class mask in its proposal's frame, pasted (``paste_masks``), above ``mask.threshold``."""
    proposals, cls_logits, box_regression = _check_outputs(outputs, spec)
    mask_logits = _check_masks(outputs, spec, proposals.shape[0])
    h, w, _ = spec.input_shape
    instances = []
    for props, logits, deltas, masks in zip(proposals, cls_logits, box_regression, mask_logits):
        boxes, scores, labels, slots = select_detections(props, logits, deltas, spec)
        probabilities = torch.sigmoid(masks[slots, :, :, labels])                             # [D, S, S]
        pasted = paste_masks(probabilities, props[slots], (h, w)) > spec.mask.threshold
        instances.append({"boxes": boxes.cpu().numpy(), "scores": scores.cpu().numpy(),
                          "labels": labels.cpu().numpy().astype(np.int64), "masks": pasted.cpu().numpy()})
    return instances


def _check_masks(outputs, spec: InstanceSegmentationSpec, batch: int) -> torch.Tensor:
    if "mask_logits" not in outputs:
        raise ValueError(f"outputs: expected 'mask_logits' among the eval-mode outputs; received {sorted(outputs)}")
    mask_logits = torch.as_tensor(outputs["mask_logits"])
    s, p, k = spec.mask.mask_size, spec.rcnn.post_nms_top_n, spec.model.num_classes
    if tuple(mask_logits.shape) != (batch, p, s, s, k):
        raise ValueError(f"outputs['mask_logits']: expected shape [{batch}, {p}, {s}, {s}, {k}] (per proposal slot "
                         f"an {s} x {s} mask per class); received {list(mask_logits.shape)}")
    return mask_logits
