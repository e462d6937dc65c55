"""Semantic-segmentation loss (TensorFlow twin): pixel-wise cross-entropy plus a soft Dice term, a fixed-key dict."""

from __future__ import annotations

from keras import ops

from shared.specs.semantic_segmentation import SegmentationSpec


def compute_loss(outputs: dict, targets, spec: SegmentationSpec) -> dict:
    """outputs["logits"]: [N, H, W, K]; targets: [N, H, W] int class ids.

    Returns ``{"loss_ce", "loss_dice", "loss"}``: the cross-entropy's mean over pixels (weighted by
    ``spec.loss.class_weights``: sum(w * nll) / sum(w), torch's rule, which Keras' sample weights do not follow:
    they divide by the pixel count), the soft Dice loss over the batch and ``loss_ce + dice_weight * loss_dice``.
    """
    logits, loss = ops.cast(outputs["logits"], "float32"), spec.loss
    k = logits.shape[-1]
    onehot = ops.one_hot(ops.cast(targets, "int32"), k, dtype="float32")
    nll = -ops.sum(onehot * ops.log_softmax(logits, axis=-1), axis=-1)
    if loss.class_weights:
        weight = ops.sum(onehot * ops.convert_to_tensor(loss.class_weights, "float32"), axis=-1)
        ce = ops.sum(weight * nll) / ops.sum(weight)
    else:
        ce = ops.mean(nll)
    probs = ops.softmax(logits, axis=-1)
    inter = ops.sum(probs * onehot, axis=(0, 1, 2))
    total = ops.sum(probs, axis=(0, 1, 2)) + ops.sum(onehot, axis=(0, 1, 2))
    dice = 1.0 - ops.mean((2.0 * inter + loss.dice_smooth) / (total + loss.dice_smooth))
    return {"loss_ce": ce, "loss_dice": dice, "loss": ce + loss.dice_weight * dice}
