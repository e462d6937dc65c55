"""RoIAlign (Mask R-CNN): torchvision.ops.roi_align behind the twins' common signature.

Layout: ``features`` come in the framework's native layout, NCHW here and NHWC
in the TensorFlow twin, because the op runs inside a model, where each twin
keeps its own layout (docs/ARCHITECTURE.md); the output is ``[K, C, out_h, out_w]``
here, ``[K, out_h, out_w, C]`` there, and ``pytorch_impl.tensors.to_numpy``
turns this one into the other at the usual boundary. Boxes and their batch
index are the same in both twins.
"""

from __future__ import annotations

import torch
from torchvision import ops as tv_ops

from shared.anchors import check_roi_args


def roi_align(features, boxes, batch_index, output_size, spatial_scale: float = 1.0, sampling_ratio: int = 2,
              aligned: bool = True) -> torch.Tensor:
    """Pool each box's region of ``features`` into ``output_size`` bins by bilinear sampling.

    features: [N, C, H, W] float (NCHW, native).
    boxes: [K, 4] float, x1, y1, x2, y2 in input-image pixels; ``spatial_scale``
        (e.g. 1 / stride) maps them onto the feature map.
    batch_index: [K] integer, the image of ``features`` each box belongs to.
    output_size: int or (out_h, out_w).
    sampling_ratio: sampling points per bin along each axis (a positive int);
        a bin's value is the mean of its ``sampling_ratio ** 2`` bilinear samples.
    aligned: shift the box by -0.5 px so that sample points sit on pixel
        centres (Detectron2's and torchvision's ``aligned=True``).
    Returns [K, C, out_h, out_w].
    """
    features = torch.as_tensor(features)
    if features.ndim != 4:
        raise ValueError(f"features: expected rank 4 [N, C, H, W] (NCHW, torch's native layout); received shape "
                         f"{list(features.shape)}")
    boxes = torch.as_tensor(boxes, dtype=features.dtype)
    batch_index = torch.as_tensor(batch_index)
    out_hw = check_roi_args(tuple(boxes.shape), tuple(batch_index.shape), output_size, spatial_scale,
                             sampling_ratio)
    if batch_index.is_floating_point():
        raise ValueError(f"batch_index: expected an integer tensor; received dtype {batch_index.dtype}")
    # A value check needs the data; skipped while torch.export / torch.compile trace the op.
    if not torch.compiler.is_compiling() and batch_index.numel() and (
            batch_index.min() < 0 or batch_index.max() >= features.shape[0]):
        raise ValueError(f"batch_index: expected values in [0, {features.shape[0]}) (the batch size); received "
                         f"range [{int(batch_index.min())}, {int(batch_index.max())}]")
    rois = torch.cat([batch_index.to(features.dtype)[:, None], boxes], dim=1)          # [K, 5]
    return tv_ops.roi_align(features, rois, out_hw, float(spatial_scale), int(sampling_ratio), bool(aligned))



__all__ = ["roi_align"]
