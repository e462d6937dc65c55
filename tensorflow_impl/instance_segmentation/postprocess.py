"""From the instance segmenter's eval-mode outputs to instances (TensorFlow / Keras 3 twin); reads line for line
like ``pytorch_impl/instance_segmentation/postprocess.py``. Each image's selection and pasting is one traced
graph (the detection twin's ``per_image``)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from shared.specs.instance_segmentation import InstanceSegmentationSpec

from ..detection.faster_rcnn import _check_outputs, select_detections
from ..detection.select import per_image


def paste_masks(probabilities, boxes, size: tuple[int, int]):
    """Masks [D, S, S] (probabilities), each predicted in the frame of its box [D, 4] (x1y1x2y2 pixels), as
    image-sized maps [D, H, W]: at each pixel centre, the mask sampled bilinearly (cell c of the mask spans
    [c, c + 1] / S of the box), zero outside the mask's grid. torch's twin calls ``F.grid_sample``
    (``align_corners=False``, zero padding); TensorFlow has no such op, so the sampling is written out: the mask
    gets a border of zeros and every sample position is clipped into it, so a sample beyond the grid reads zeros
    as grid_sample's padding does (tested against it)."""
    h, w = size
    s = probabilities.shape[-1]
    padded = tf.pad(probabilities, [[0, 0], [1, 1], [1, 1]])                                    # [D, S + 2, S + 2]
    # Sample positions in mask cells (cell centres at c + 0.5), one axis at a time.
    x = (tf.range(w, dtype=boxes.dtype) + 0.5)[None]
    y = (tf.range(h, dtype=boxes.dtype) + 0.5)[None]
    u = (x - boxes[:, :1]) / (boxes[:, 2:3] - boxes[:, :1]) * s - 0.5                          # [D, W]
    v = (y - boxes[:, 1:2]) / (boxes[:, 3:4] - boxes[:, 1:2]) * s - 0.5                         # [D, H]

    def corners(t):  # -> the two neighbouring cells (as indices into the padded mask) and the far one's weight
        t0 = tf.floor(t)
        lo = tf.cast(tf.clip_by_value(t0, -1.0, float(s)), tf.int32) + 1
        hi = tf.cast(tf.clip_by_value(t0 + 1.0, -1.0, float(s)), tf.int32) + 1
        return lo, hi, t - t0

    x0, x1, wx = corners(u)
    y0, y1, wy = corners(v)
    rows0 = tf.gather(padded, y0, batch_dims=1)                                                 # [D, H, S + 2]
    rows1 = tf.gather(padded, y1, batch_dims=1)

    def across(rows):  # bilinear along x of one row set: [D, H, W]
        left = tf.gather(rows, tf.broadcast_to(x0[:, None], [tf.shape(rows)[0], h, w]), batch_dims=2)
        right = tf.gather(rows, tf.broadcast_to(x1[:, None], [tf.shape(rows)[0], h, w]), batch_dims=2)
        return left * (1.0 - wx[:, None]) + right * wx[:, None]

    return across(rows0) * (1.0 - wy[:, :, None]) + across(rows1) * wy[:, :, None]


def postprocess(outputs, spec: InstanceSegmentationSpec) -> list[dict[str, np.ndarray]]:
    """Eval-mode outputs (tensors or numpy) -> per image ``boxes`` float32 [D, 4], ``scores`` float32 [D],
    ``labels`` int64 [D] (as the detector's ``postprocess``) and ``masks`` bool [D, H, W]: the sigmoid of the
    detection's class mask in its proposal's frame, pasted (``paste_masks``), above ``mask.threshold``."""
    proposals, cls_logits, box_regression = _check_outputs(outputs, spec)
    mask_logits = _check_masks(outputs, spec, proposals.shape[0])
    return per_image(_postprocess_image, spec, proposals, cls_logits, box_regression, mask_logits,
                     keys=("boxes", "scores", "labels", "masks"))


def _postprocess_image(props, logits, deltas, masks, spec: InstanceSegmentationSpec):
    h, w, _ = spec.input_shape
    boxes, scores, labels, slots = select_detections(props, logits, deltas, spec)
    probabilities = tf.sigmoid(tf.gather(tf.gather(masks, slots), labels, axis=3, batch_dims=1))  # [D, S, S]
    pasted = paste_masks(probabilities, tf.gather(props, slots), (h, w)) > spec.mask.threshold
    return boxes, scores, labels, pasted


def _check_masks(outputs, spec: InstanceSegmentationSpec, batch: int):
    if "mask_logits" not in outputs:
        raise ValueError(f"outputs: expected 'mask_logits' among the eval-mode outputs; received {sorted(outputs)}")
    mask_logits = tf.convert_to_tensor(outputs["mask_logits"])
    s, p, k = spec.mask.mask_size, spec.rcnn.post_nms_top_n, spec.model.num_classes
    if tuple(mask_logits.shape) != (batch, p, s, s, k):
        raise ValueError(f"outputs['mask_logits']: expected shape [{batch}, {p}, {s}, {s}, {k}] (per proposal slot "
                         f"an {s} x {s} mask per class); received {mask_logits.shape.as_list()}")
    return mask_logits
