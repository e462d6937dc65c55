"""The instance segmenter's loss (PyTorch twin): torchvision's Mask R-CNN losses as a fixed-key dict.

The detector's four terms come from the detection twin (``faster_rcnn.detector_losses``), which also hands over
the RoIs its box head was trained on; the mask term is the binary cross-entropy of the matched class's mask
logits against the matched object's visible mask cropped to the RoI by RoIAlign (torchvision's
``maskrcnn_loss``; here with aligned sampling, ``mask.sampling_ratio`` points per bin, as the twins' RoIAlign
takes them), averaged over the pixels of up to ``mask.rois_per_image`` sampled positive RoIs per image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from shared.data.instance_segmentation import pack_instance_targets
from shared.specs.instance_segmentation import InstanceSegmentationSpec

from ..detection.faster_rcnn import UNSAMPLED_OFFSET, detector_losses
from ..detection.targets import batch_normaliser
from ..ops import roi_align

LOSS_KEYS = ("loss", "loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask")


def split_targets(targets, spec: InstanceSegmentationSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Training targets [B, spec.target_width] (or per image ``{"boxes", "labels", "masks"}``, torchvision's
    format, packed first) -> packed boxes [B, M, 5] and instance-id maps [B, H, W] int64
    (shared.data.instance_segmentation.training_targets' layout: 0 background, k + 1 object row k)."""
    if isinstance(targets, (list, tuple)):
        cpu = [{k: v.cpu().numpy() if torch.is_tensor(v) else v for k, v in t.items()} if isinstance(t, dict) else t
               for t in targets]
        targets = torch.from_numpy(pack_instance_targets(cpu, spec))
    targets = torch.as_tensor(targets)
    width, (h, w, _), m = spec.target_width, spec.input_shape, spec.data.max_objects
    if targets.ndim != 2 or targets.shape[1] != width:
        raise ValueError(f"targets: expected shape [B, {width}] ({m} packed box rows of 5, then the {h} x {w} "
                         f"instance-id map); received {list(targets.shape)}")
    ids = targets[:, m * 5:].reshape(-1, h, w).round().to(torch.int64)
    if ((ids < 0) | (ids > m)).any():
        raise ValueError(f"targets: expected instance ids in [0, {m}] (0: background); received range "
                         f"[{int(ids.min())}, {int(ids.max())}]")
    return targets[:, :m * 5].reshape(-1, m, 5), ids


def compute_loss(outputs: dict, targets, spec: InstanceSegmentationSpec) -> dict[str, torch.Tensor]:
    """Training-mode outputs and targets [B, target_width] -> ``LOSS_KEYS``: the detector's terms, ``loss_mask``
    and their sum ``loss``."""
    if not isinstance(outputs, dict) or "mask_head" not in outputs:
        keys = sorted(outputs) if isinstance(outputs, dict) else type(outputs).__name__
        raise ValueError(f"outputs: expected the training-mode outputs with 'mask_head' (model.train()); "
                         f"received {keys}")
    packed, ids = split_targets(targets, spec)
    losses, rois = detector_losses(outputs, packed.to(outputs["objectness"].device), spec)
    loss_mask = mask_loss(outputs["mask_head"], rois, ids.to(rois.candidates.device), spec)
    losses["loss_mask"] = loss_mask
    losses["loss"] = losses["loss"] + loss_mask
    return {key: losses[key] for key in LOSS_KEYS}


def mask_loss(mask_head, rois, ids: torch.Tensor, spec: InstanceSegmentationSpec) -> torch.Tensor:
    """Mean per-pixel BCE of the matched class's mask logits over the first ``rois_per_image`` sampled positive
    RoIs of each image (by sampling priority); 0 with a gradient path when no image has a positive."""
    m, (h, w, _) = spec.mask, spec.input_shape
    batch, n = rois.positive.shape
    count = min(m.rois_per_image, n)
    key = torch.where(rois.positive, rois.priority, rois.priority + UNSAMPLED_OFFSET)
    order = torch.argsort(key, dim=1)[:, :count]                                            # [B, R]
    valid = torch.gather(rois.positive, 1, order)
    boxes = torch.gather(rois.candidates, 1, order[..., None].expand(-1, -1, 4))
    rows = torch.gather(rois.rows, 1, order)
    labels = torch.gather(rois.labels, 1, order)
    logits = mask_head(boxes)                                                               # [B, R, S, S, K]
    size = logits.shape[2]
    chosen = torch.gather(logits, 4, labels[:, :, None, None, None].expand(-1, -1, size, size, 1))[..., 0]
    # Each object's visible mask, then each RoI's object cropped to the RoI at S x S (aligned RoIAlign).
    objects = spec.data.max_objects
    masks = (ids[:, None] == torch.arange(1, objects + 1, device=ids.device)[None, :, None, None])
    masks = masks.to(chosen.dtype).reshape(batch * objects, 1, h, w)
    which = (torch.arange(batch, device=ids.device)[:, None] * objects + rows).reshape(-1)
    target = roi_align(masks, boxes.reshape(-1, 4).detach(), which, size, 1.0, m.sampling_ratio, True)
    bce = F.binary_cross_entropy_with_logits(chosen, target.reshape(batch, count, size, size), reduction="none")
    per_roi = bce.mean(dim=(2, 3))
    return torch.where(valid, per_roi, 0.0).sum() / batch_normaliser(valid.sum()).to(per_roi.dtype)
