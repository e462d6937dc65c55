"""Semantic-segmentation metrics from a confusion matrix over every pixel: IoU per class, mIoU, pixel accuracy,
and boundary IoU (how well the edges are placed).

The confusion matrix is a ``np.bincount`` over (true, predicted) pairs, tested against scikit-learn's
``confusion_matrix`` and ``jaccard_score`` (tests/test_semantic_segmentation.py). IoU of class c is
TP / (TP + FP + FN); mIoU averages it over the classes that occur (in the truth or the prediction): a class
absent from both has no IoU, as torchmetrics' and mmseg's mIoU leave it out.

Boundary IoU (Cheng et al., 2021) is the same ratio restricted to each class's boundary band: the pixels of its
region within ``width`` pixels of the region's edge (the region minus its erosion), in the truth and in the
prediction. Interior pixels are easy; the band is where a coarse decoder loses, so it measures the sharpening
that skip connections are said to bring. The image border is not an edge (the erosion treats the outside as
inside), so an object cut by the border has no band there.
"""

from __future__ import annotations

import numpy as np

PRIMARY_METRIC = "miou"
BOUNDARY_WIDTH = 2  # pixels: the band of boundary IoU (2 px of 64 px images, Cheng et al.'s 2% of the diagonal)


def confusion_matrix(predicted: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    """[K, K] int64 counts of pixels with true class i (row) predicted as j (column)."""
    predicted, truth = np.asarray(predicted), np.asarray(truth)
    if predicted.shape != truth.shape:
        raise ValueError(f"predicted: expected the truth's shape {list(truth.shape)}; received "
                         f"{list(predicted.shape)}")
    for name, values in (("predicted", predicted), ("truth", truth)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name}: expected class ids in [0, {num_classes - 1}]; received values from "
                             f"{int(values.min())} to {int(values.max())}")
    pairs = truth.astype(np.int64).ravel() * num_classes + predicted.astype(np.int64).ravel()
    return np.bincount(pairs, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_from_confusion(matrix: np.ndarray) -> np.ndarray:
    """[K] IoU per class, NaN for a class neither true nor predicted anywhere."""
    tp = np.diag(matrix).astype(np.float64)
    union = matrix.sum(axis=0) + matrix.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def boundary_iou(predicted: np.ndarray, truth: np.ndarray, num_classes: int,
                 width: int = BOUNDARY_WIDTH) -> tuple[float, list[float | None]]:
    """Mean and per-class boundary IoU of [N, H, W] class maps (module docstring); None for a class with no band."""
    from scipy.ndimage import binary_erosion

    def bands(maps: np.ndarray) -> np.ndarray:
        onehot = maps[..., None] == np.arange(num_classes)                        # [N, H, W, K]
        structure = np.zeros((1, 3, 3, 1), dtype=bool)
        structure[0, :, :, 0] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
        return onehot & ~binary_erosion(onehot, structure, iterations=width, border_value=1)

    p, t = bands(np.asarray(predicted)), bands(np.asarray(truth))
    inter, union = (p & t).sum(axis=(0, 1, 2)), (p | t).sum(axis=(0, 1, 2))
    per_class = [float(i / u) if u else None for i, u in zip(inter, union)]
    present = [v for v in per_class if v is not None]
    return (float(np.mean(present)) if present else 0.0), per_class


def segmentation_metrics(logits: np.ndarray, truth: np.ndarray, num_classes: int, *, boundary: bool = True) -> dict:
    """miou, pixel_accuracy, per_class_iou (a list; None for a class absent from truth and prediction) and, with
    ``boundary``, boundary_iou and per_class_boundary_iou, of [N, H, W, K] logits against [N, H, W] class maps."""
    logits, truth = np.asarray(logits), np.asarray(truth)
    if logits.ndim != 4 or logits.shape[-1] != num_classes or logits.shape[:3] != truth.shape:
        raise ValueError(f"logits: expected shape [N, H, W, {num_classes}] matching the class maps "
                         f"{list(truth.shape)}; received {list(logits.shape)}")
    predicted = logits.argmax(axis=-1)
    matrix = confusion_matrix(predicted, truth, num_classes)
    iou = iou_from_confusion(matrix)
    out = {"miou": float(np.nanmean(iou)), "pixel_accuracy": float(np.trace(matrix) / max(matrix.sum(), 1)),
           "per_class_iou": [None if np.isnan(v) else float(v) for v in iou]}
    if boundary:
        out["boundary_iou"], out["per_class_boundary_iou"] = boundary_iou(predicted, truth, num_classes)
    return out


def evaluate(spec, outputs: dict, split, postprocess=None) -> dict:
    """The task's metrics hook (``shared.metrics.evaluate_outputs``): per-pixel logits need no post-processing."""
    return segmentation_metrics(outputs["logits"], split.masks, spec.model.num_classes)


def agreement(a: dict, b: dict, spec) -> float:
    """The share of pixels whose class two backends' logits agree on."""
    return float((np.asarray(a["logits"]).argmax(-1) == np.asarray(b["logits"]).argmax(-1)).mean())


__all__ = ["BOUNDARY_WIDTH", "PRIMARY_METRIC", "agreement", "boundary_iou", "confusion_matrix", "evaluate",
           "iou_from_confusion", "segmentation_metrics"]
