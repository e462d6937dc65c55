"""The slots of the YOLO-style grid detector in numpy: what both twins' target assignment and decoding use.

A slot is one prior shape (anchor) of one cell of one level, in shared.anchors'
order (level, row ``y``, column ``x``, anchor of the cell), so slot ``a`` is
row ``a`` of the detector's flattened outputs and ``task_anchors(spec)[a]`` is
its prior box: centred on the cell centre ``((x + 0.5) * stride, (y + 0.5) * stride)``
with the prior's width and height.

Box coding (YOLOv3's, pixels): for a slot of stride ``s`` whose prior box has
centre ``(px, py)`` and size ``(pw, ph)``, the raw outputs ``(tx, ty, tw, th)``
decode to the centre ``px + (sigmoid(tx) - 0.5) * s`` (that is
``(x + sigmoid(tx)) * s``: the centre stays inside the cell), ``py + (sigmoid(ty) - 0.5) * s``
and the size ``pw * exp(tw)``, ``ph * exp(th)`` (``tw``, ``th`` clamped above
at shared.anchors.BBOX_XFORM_CLIP, as the box coder's). The encoded targets
of a ground-truth box are ``sigmoid(tx)``, ``sigmoid(ty)`` (the centre's
offset in its cell, in [0, 1]) and ``tw``, ``th``.
"""

from __future__ import annotations

import functools

import numpy as np

from .anchors import feature_sizes, generate_anchors, task_anchors
from .specs.detection import AnchorSpec


def yolo_slots(spec) -> dict[str, np.ndarray]:
    """Per slot of a detection task spec, float32, read-only and cached:

    ``priors`` [A, 4] x1y1x2y2 prior boxes (= ``task_anchors(spec)``); ``strides`` [A];
    ``cells`` [A, 2] the cell's (column, row); ``grid`` [A, 2] its level's (width, height) in cells.
    """
    slots = _cached_slots(spec.anchors, int(spec.data.image_size))
    if slots["priors"].shape != task_anchors(spec).shape:
        raise AssertionError("yolo_slots and task_anchors disagree on the slot count")
    return slots


@functools.lru_cache(maxsize=32)
def _cached_slots(spec: AnchorSpec, image_size: int) -> dict[str, np.ndarray]:
    strides, cells, grid = [], [], []
    for stride, per_cell, (h, w) in zip(spec.strides, spec.num_anchors_per_location,
                                        feature_sizes(spec, image_size)):
        rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        col_row = np.stack([cols, rows], axis=-1).reshape(-1, 1, 2)
        cells.append(np.broadcast_to(col_row, (h * w, per_cell, 2)).reshape(-1, 2))
        strides.append(np.full(h * w * per_cell, stride))
        grid.append(np.broadcast_to([w, h], (h * w * per_cell, 2)))
    out = {"priors": generate_anchors(spec, image_size), "strides": np.concatenate(strides),
           "cells": np.concatenate(cells), "grid": np.concatenate(grid)}
    out = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}
    for v in out.values():
        v.setflags(write=False)
    return out
