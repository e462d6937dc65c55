"""Anchor boxes, box IoU and box-coding constants in numpy: what both detector twins are built on.

Anchors depend only on the spec and the input size, so they are computed once
here and handed to either twin as an array; neither framework regenerates them.

Boxes are ``[N, 4]`` as ``x1, y1, x2, y2`` in input-image pixels
(shared.specs.detection states the pixel convention).

Anchor order (the order of a detection head's flattened outputs): level, then
row ``y``, then column ``x``, then the anchors of one cell. Within a cell the
anchor index is ``ratio_index * len(sizes) + size_index``. This is
torchvision's ``AnchorGenerator`` order; the two differences from it are that
anchors here are centred on cell centres ``(i + 0.5) * stride`` (torchvision
puts them at ``i * stride``) and that their extents are not rounded to whole
pixels (torchvision rounds its zero-centred base anchors).
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import numpy as np

from .specs.detection import AnchorSpec

# Constants both twins' box ops share (pytorch_impl/ops/boxes.py, tensorflow_impl/ops/boxes.py).
# Faster R-CNN's box-coding weights for (dx, dy, dw, dh): torchvision's RoI heads default.
BOX_CODER_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
# Upper clamp of decoded log-scale deltas: a box grows at most 1000/16 = 62.5x (torchvision's BoxCoder).
BBOX_XFORM_CLIP = math.log(1000.0 / 16)
# match_anchors labels: torchvision Matcher's BELOW_LOW_THRESHOLD and BETWEEN_THRESHOLDS.
BACKGROUND = -1
IGNORE = -2


def cell_anchors(sizes: Sequence[float], aspect_ratios: Sequence[float]) -> np.ndarray:
    """The anchors of one cell, centred on (0, 0): float32 [len(aspect_ratios) * len(sizes), 4].

    aspect ratio r is height / width: ``h = s * sqrt(r)``, ``w = s / sqrt(r)``.
    """
    sizes = np.asarray(sizes, dtype=np.float64)
    ratios = np.asarray(aspect_ratios, dtype=np.float64)
    if sizes.ndim != 1 or ratios.ndim != 1 or not sizes.size or not ratios.size:
        raise ValueError(f"sizes and aspect_ratios: expected non-empty 1-D sequences; received {sizes.shape} "
                         f"and {ratios.shape}")
    if (sizes <= 0).any() or (ratios <= 0).any():
        raise ValueError(f"sizes and aspect_ratios: expected positive values; received {sizes.tolist()} and "
                         f"{ratios.tolist()}")
    h_ratios = np.sqrt(ratios)
    ws = (sizes[None, :] / h_ratios[:, None]).reshape(-1)     # ratio-major, size-minor
    hs = (sizes[None, :] * h_ratios[:, None]).reshape(-1)
    return (np.stack([-ws, -hs, ws, hs], axis=1) / 2).astype(np.float32)


def grid_anchors(stride: int, sizes: Sequence[float], aspect_ratios: Sequence[float],
                 grid_hw: tuple[int, int]) -> np.ndarray:
    """All anchors of one level: float32 [grid_h * grid_w * A, 4] in (y, x, anchor) order."""
    grid_h, grid_w = (int(v) for v in grid_hw)
    if grid_h < 1 or grid_w < 1:
        raise ValueError(f"grid_hw: expected a positive (height, width); received {grid_hw}")
    if stride <= 0:
        raise ValueError(f"stride: expected a positive number of pixels; received {stride}")
    base = cell_anchors(sizes, aspect_ratios).astype(np.float64)
    cx = (np.arange(grid_w) + 0.5) * stride
    cy = (np.arange(grid_h) + 0.5) * stride
    cy, cx = np.meshgrid(cy, cx, indexing="ij")
    shifts = np.stack([cx, cy, cx, cy], axis=-1).reshape(-1, 1, 4)
    return (shifts + base[None]).reshape(-1, 4).astype(np.float32)


def feature_sizes(spec: AnchorSpec, image_size: int | tuple[int, int]) -> list[tuple[int, int]]:
    """(height, width) of each level's feature map: ``ceil(image side / stride)``.

    That is the output size of a stride-s convolution stack with "same"-style
    padding; a detector whose backbone differs passes its own sizes to
    ``generate_anchors``.
    """
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    return [(math.ceil(h / s), math.ceil(w / s)) for s in spec.strides]


def anchors_per_level(spec: AnchorSpec, image_size: int | tuple[int, int],
                      sizes_hw: Sequence[tuple[int, int]] | None = None) -> list[np.ndarray]:
    """One float32 [H_l * W_l * A_l, 4] array per level (see the module docstring for the order)."""
    sizes_hw = feature_sizes(spec, image_size) if sizes_hw is None else list(sizes_hw)
    if len(sizes_hw) != spec.num_levels:
        raise ValueError(f"sizes_hw: expected one (height, width) per level ({spec.num_levels}); "
                         f"received {len(sizes_hw)}: {sizes_hw}")
    return [grid_anchors(stride, sizes, ratios, hw)
            for stride, sizes, ratios, hw in zip(spec.strides, spec.sizes, spec.aspect_ratios, sizes_hw)]


def generate_anchors(spec: AnchorSpec, image_size: int | tuple[int, int],
                     sizes_hw: Sequence[tuple[int, int]] | None = None) -> np.ndarray:
    """Every anchor of every level, concatenated: float32 [sum_l H_l * W_l * A_l, 4]."""
    return np.concatenate(anchors_per_level(spec, image_size, sizes_hw), axis=0)


def task_anchors(spec) -> np.ndarray:
    """The anchors of a detection task spec: ``spec.anchors`` over ``spec.data.image_size`` images.

    float32 [A, 4], read-only and cached: both twins' losses and post-processing call this on every batch.
    """
    return _cached_anchors(spec.anchors, int(spec.data.image_size))


@functools.lru_cache(maxsize=32)
def _cached_anchors(spec: AnchorSpec, image_size: int) -> np.ndarray:
    anchors = generate_anchors(spec, image_size)
    anchors.setflags(write=False)
    return anchors


def _check_boxes(boxes, name: str) -> np.ndarray:
    boxes = np.asarray(boxes)
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"{name}: expected shape [N, 4] (x1, y1, x2, y2); received shape {boxes.shape}")
    return boxes


def box_area(boxes) -> np.ndarray:
    """[N] areas of [N, 4] x1y1x2y2 boxes."""
    boxes = _check_boxes(boxes, "boxes")
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(a, b) -> np.ndarray:
    """[N, M] IoU of [N, 4] and [M, 4] x1y1x2y2 boxes (torchvision.ops.box_iou's formula)."""
    a, b = _check_boxes(a, "a"), _check_boxes(b, "b")
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union


def anchor_recall(anchors, gt_boxes, iou_threshold: float = 0.5) -> float:
    """Fraction of ground-truth boxes whose best anchor has IoU >= ``iou_threshold``.

    anchors: [A, 4]. gt_boxes: one [M, 4] array, or a sequence of them (one per
    image: anchors are the same for every image, so they are pooled). A box no
    anchor reaches cannot become a positive training example for an
    anchor-based detector, so this bounds what it can learn to find.
    """
    if not isinstance(gt_boxes, np.ndarray):
        parts = [_check_boxes(g, f"gt_boxes[{i}]") for i, g in enumerate(gt_boxes)]
        gt_boxes = np.concatenate(parts, axis=0) if parts else np.zeros((0, 4), np.float32)
    gt_boxes = _check_boxes(gt_boxes, "gt_boxes")
    anchors = _check_boxes(anchors, "anchors")
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold: expected a number in (0, 1]; received {iou_threshold}")
    if gt_boxes.shape[0] == 0:
        raise ValueError("gt_boxes: expected at least one ground-truth box; received none (recall is undefined)")
    if anchors.shape[0] == 0:
        raise ValueError("anchors: expected at least one anchor; received none")
    best = np.zeros(gt_boxes.shape[0])
    # Chunks keep the [M, A] IoU matrix small for data sets with many boxes.
    for start in range(0, gt_boxes.shape[0], 256):
        best[start:start + 256] = np.nan_to_num(box_iou(gt_boxes[start:start + 256], anchors)).max(axis=1)
    return float((best >= iou_threshold).mean())


def check_roi_args(boxes_shape, index_shape, output_size, spatial_scale, sampling_ratio) -> tuple[int, int]:
    """Validate the RoIAlign arguments both twins share; returns (out_h, out_w).

    boxes_shape / index_shape: tuples whose entries may be None (a dimension
    unknown while tracing), or None for an unknown rank; unknowns pass.
    """
    if boxes_shape is not None and (len(boxes_shape) != 2 or boxes_shape[-1] not in (4, None)):
        raise ValueError(f"boxes: expected shape [K, 4] (x1, y1, x2, y2); received shape {list(boxes_shape)}")
    k = boxes_shape[0] if boxes_shape is not None else None
    if index_shape is not None and (len(index_shape) != 1 or (k is not None and index_shape[0] not in (k, None))):
        raise ValueError(f"batch_index: expected shape [{k}] (one image index per box); received shape "
                         f"{list(index_shape)}")
    out_hw = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    if len(out_hw) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in out_hw):
        raise ValueError(f"output_size: expected a positive int or (out_h, out_w); received {output_size!r}")
    if not spatial_scale > 0:
        raise ValueError(f"spatial_scale: expected a positive number (feature pixels per image pixel); received "
                         f"{spatial_scale!r}")
    if isinstance(sampling_ratio, bool) or not isinstance(sampling_ratio, int) or sampling_ratio < 1:
        # torchvision reads sampling_ratio <= 0 as "ceil(box size / bins) points per box", a count that depends
        # on each box's size: no fixed-shape gather can express it, so neither twin takes it.
        raise ValueError(f"sampling_ratio: expected a positive integer (sampling points per bin and axis); "
                         f"received {sampling_ratio!r}. The adaptive mode (<= 0) samples a box-size-dependent "
                         f"number of points, which has no fixed-shape (graph, XLA, ONNX) form")
    return out_hw


# -- the anchor study (seed answer 23): how the anchor set bounds what a detector can find --------------

# COCO's object-size ranges, by area in pixels (pycocotools' areaRng): small < 32^2 <= medium < 96^2 <= large.
SIZE_RANGES = {"small": (0.0, 32.0**2), "medium": (32.0**2, 96.0**2), "large": (96.0**2, float("inf"))}


def study_configs(base: AnchorSpec) -> dict[str, AnchorSpec]:
    """Anchor sets to compare against ``base``: fewer / more sizes per level, other aspect ratios, one level.

    Each varies one thing, so the table reads as an ablation: the size ladder
    (1, 2 or 3 sizes per level between a level's extremes), the aspect ratios
    (square only, the base's, SSD / Faster R-CNN's 1:2, 1:1, 2:1), and a
    single-level set at the middle stride with every size (what a one-scale
    detector, YOLO-style, would have).
    """
    def ladder(count: int) -> tuple[tuple[float, ...], ...]:
        out = []
        for sizes in base.sizes:
            lo, hi = min(sizes), max(sizes)
            out.append((float(np.sqrt(lo * hi)),) if count == 1 else
                       tuple(float(v) for v in np.geomspace(lo, hi, count)))
        return tuple(out)

    levels = base.num_levels
    middle = levels // 2
    all_sizes = tuple(sorted({float(v) for sizes in base.sizes for v in sizes}))
    return {
        "base": base,
        "1 size per level": AnchorSpec(base.strides, ladder(1), base.aspect_ratios),
        "3 sizes per level": AnchorSpec(base.strides, ladder(3), base.aspect_ratios),
        "square only": AnchorSpec(base.strides, base.sizes, ((1.0,),) * levels),
        "ratios 1:2, 1:1, 2:1": AnchorSpec(base.strides, base.sizes, ((0.5, 1.0, 2.0),) * levels),
        "one level (stride %d), every size" % base.strides[middle]: AnchorSpec(
            (base.strides[middle],), (all_sizes,), (base.aspect_ratios[middle],)),
    }


def anchor_study(configs: dict[str, AnchorSpec], image_size: int, gt_boxes: Sequence[np.ndarray],
                 thresholds: Sequence[float] = (0.5, 0.7)) -> list[dict]:
    """Recall of ground-truth boxes by each anchor set: overall per IoU threshold and per COCO size range at 0.5.

    One row per config: ``config``, ``anchors`` (count), ``anchors_per_cell``
    (per level), ``recall@T`` per threshold, ``recall_small`` /
    ``recall_medium`` / ``recall_large`` at IoU 0.5 (None where the data has no
    box of that size), and ``boxes`` (how many were counted).
    """
    boxes = np.concatenate([_check_boxes(g, f"gt_boxes[{i}]") for i, g in enumerate(gt_boxes)], axis=0)
    areas = box_area(boxes)
    rows = []
    for name, spec in configs.items():
        anchors = generate_anchors(spec, image_size)
        row = {"config": name, "anchors": int(anchors.shape[0]), "anchors_per_cell": list(spec.num_anchors_per_location),
               "boxes": int(boxes.shape[0])}
        for t in thresholds:
            row[f"recall@{t:g}"] = anchor_recall(anchors, boxes, t)
        for label, (lo, hi) in SIZE_RANGES.items():
            picked = boxes[(areas >= lo) & (areas < hi)]
            row[f"recall_{label}"] = anchor_recall(anchors, picked, 0.5) if picked.shape[0] else None
        rows.append(row)
    return rows


__all__ = ["BACKGROUND", "BBOX_XFORM_CLIP", "BOX_CODER_WEIGHTS", "IGNORE", "anchor_recall", "anchors_per_level",
           "anchor_study", "box_area", "box_iou", "cell_anchors", "check_roi_args", "feature_sizes", "generate_anchors", "grid_anchors",
           "study_configs", "task_anchors", "SIZE_RANGES"]
