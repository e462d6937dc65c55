"""Semantic-segmentation loss (PyTorch twin): pixel-wise cross-entropy plus a soft Dice term, a fixed-key dict."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from shared.specs.semantic_segmentation import SegmentationSpec


def compute_loss(outputs: dict[str, torch.Tensor], targets: torch.Tensor, spec: SegmentationSpec) -> dict:
    """outputs["logits"]: [N, K, H, W]; targets: [N, H, W] int64 class ids.

    Returns ``{"loss_ce", "loss_dice", "loss"}``: the cross-entropy's mean over pixels (weighted by
    ``spec.loss.class_weights``: sum(w * nll) / sum(w), torch's rule), the soft Dice loss over the batch
    (1 - mean over classes of (2 sum(p y) + s) / (sum p + sum y + s), softmax probabilities p, one-hot truth y)
    and ``loss_ce + dice_weight * loss_dice``.
    """
    logits, loss = outputs["logits"].float(), spec.loss
    k = logits.shape[1]
    weight = torch.tensor(loss.class_weights, dtype=logits.dtype, device=logits.device) if loss.class_weights \
        else None
    ce = F.cross_entropy(logits, targets, weight=weight)
    probs = torch.softmax(logits, dim=1)
    onehot = F.one_hot(targets, k).permute(0, 3, 1, 2).to(logits.dtype)
    inter = (probs * onehot).sum(dim=(0, 2, 3))
    total = probs.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))
    dice = 1.0 - ((2.0 * inter + loss.dice_smooth) / (total + loss.dice_smooth)).mean()
    return {"loss_ce": ce, "loss_dice": dice, "loss": ce + loss.dice_weight * dice}
