"""RoIAlign (Mask R-CNN) in TensorFlow ops, sample for sample as torchvision.ops.roi_align.

TensorFlow has no RoIAlign: tf.image.crop_and_resize takes one bilinear sample
per output cell at the cell's corner-aligned position, with no averaging over
a grid of samples inside each bin and its own treatment of box edges, so it
is a different op. This is torchvision's CPU kernel written with gathers:

- a box ``(x1, y1, x2, y2)`` is scaled by ``spatial_scale`` and, with
  ``aligned``, shifted by -0.5 px so that sample points sit on pixel centres;
- the box is split into ``out_h x out_w`` bins, each sampled on a regular
  ``sampling_ratio x sampling_ratio`` grid at the centres of its sub-cells;
- each sample is bilinear in the four nearest pixels; a sample with
  ``y < -1`` or ``y > H`` (likewise x) counts as 0, a sample in ``[-1, 0]`` is
  clamped to 0, and one past the last pixel centre takes that pixel;
- a bin is the mean of its samples (out-of-map ones included, as zeros).

Bilinear weights are separable, so each axis's pixel indices and weights are
computed once per box and combined by broadcasting; the four corner gathers
are the only reads of ``features``. All of it is differentiable with respect
to ``features`` (the gradient of tf.gather scatters it back), and works in
tf.function with unknown K.

Layout: ``features`` come in the framework's native layout, NHWC here and
NCHW in the PyTorch twin, because the op runs inside a model, where each twin
keeps its own layout (docs/ARCHITECTURE.md); the output is ``[K, out_h, out_w, C]``
here, ``[K, C, out_h, out_w]`` there (``pytorch_impl.tensors.to_numpy`` turns
that one into this one). Boxes and their batch index are the same in both twins.
"""

from __future__ import annotations

import tensorflow as tf

from shared.anchors import check_roi_args


def roi_align(features, boxes, batch_index, output_size, spatial_scale: float = 1.0, sampling_ratio: int = 2,
              aligned: bool = True) -> tf.Tensor:
    """Pool each box's region of ``features`` into ``output_size`` bins by bilinear sampling.

    features: [N, H, W, C] float (NHWC, native).
    boxes: [K, 4] float, x1, y1, x2, y2 in input-image pixels; ``spatial_scale``
        (e.g. 1 / stride) maps them onto the feature map.
    batch_index: [K] integer, the image of ``features`` each box belongs to.
    output_size: int or (out_h, out_w).
    sampling_ratio: sampling points per bin along each axis (a positive int);
        a bin's value is the mean of its ``sampling_ratio ** 2`` bilinear samples.
    aligned: shift the box by -0.5 px so that sample points sit on pixel
        centres (Detectron2's and torchvision's ``aligned=True``).
    Returns [K, out_h, out_w, C].
    """
    features = tf.convert_to_tensor(features, dtype_hint=tf.float32)
    if features.shape.rank != 4:
        raise ValueError(f"features: expected rank 4 [N, H, W, C] (NHWC, TensorFlow's native layout); received "
                         f"shape {features.shape.as_list() if features.shape.rank is not None else 'unknown'}")
    boxes = tf.cast(tf.convert_to_tensor(boxes, dtype_hint=features.dtype), features.dtype)
    batch_index = tf.convert_to_tensor(batch_index, dtype_hint=tf.int32)
    out_h, out_w = check_roi_args(_dims(boxes.shape), _dims(batch_index.shape), output_size, spatial_scale,
                                  sampling_ratio)
    if batch_index.dtype.is_floating:
        raise ValueError(f"batch_index: expected an integer tensor; received dtype {batch_index.dtype.name}")
    batch_index = tf.cast(batch_index, tf.int32)
    shape = tf.shape(features)
    n, h, w, c = shape[0], shape[1], shape[2], shape[3]
    if tf.executing_eagerly() and tf.size(batch_index) > 0:
        lo, hi = int(tf.reduce_min(batch_index)), int(tf.reduce_max(batch_index))
        if lo < 0 or hi >= int(n):
            raise ValueError(f"batch_index: expected values in [0, {int(n)}) (the batch size); received range "
                             f"[{lo}, {hi}]")

    offset = 0.5 if aligned else 0.0
    x1 = boxes[:, 0] * spatial_scale - offset
    y1 = boxes[:, 1] * spatial_scale - offset
    x2 = boxes[:, 2] * spatial_scale - offset
    y2 = boxes[:, 3] * spatial_scale - offset
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:
        # The legacy mode forces boxes to at least 1x1 feature pixel (torchvision does the same).
        roi_w, roi_h = tf.maximum(roi_w, 1.0), tf.maximum(roi_h, 1.0)
    ys = _sample_points(y1, roi_h / out_h, out_h, sampling_ratio)               # [K, out_h, S]
    xs = _sample_points(x1, roi_w / out_w, out_w, sampling_ratio)               # [K, out_w, S]
    y_low, y_high, wy_low, wy_high = _bilinear_axis(ys, h)
    x_low, x_high, wx_low, wx_high = _bilinear_axis(xs, w)

    flat = tf.reshape(features, [-1, c])                                         # [N * H * W, C]
    image_start = batch_index * h * w                                            # [K]

    def gather(y_idx, x_idx):
        # [K, out_h, S, 1, 1] and [K, 1, 1, out_w, S] -> [K, out_h, S, out_w, S, C]
        rows = image_start[:, None, None, None, None] + y_idx[:, :, :, None, None] * w
        return tf.gather(flat, rows + x_idx[:, None, None, :, :])

    def weight(wy, wx):
        return (wy[:, :, :, None, None] * wx[:, None, None, :, :])[..., None]   # [K, out_h, S, out_w, S, 1]

    samples = (weight(wy_low, wx_low) * gather(y_low, x_low) + weight(wy_low, wx_high) * gather(y_low, x_high)
               + weight(wy_high, wx_low) * gather(y_high, x_low) + weight(wy_high, wx_high) * gather(y_high, x_high))
    count = float(sampling_ratio * sampling_ratio)
    return tf.reduce_sum(samples, axis=[2, 4]) / count                           # [K, out_h, out_w, C]


def _sample_points(start: tf.Tensor, bin_size: tf.Tensor, bins: int, sampling_ratio: int) -> tf.Tensor:
    """[K, bins, S] sample coordinates along one axis: the centres of S sub-cells of each bin.

    The same float32 expression as torchvision's kernel,
    ``start + p * bin_size + (i + 0.5) * bin_size / S``, for the same rounding.
    """
    p = tf.range(bins, dtype=start.dtype)[None, :, None]
    i = tf.range(sampling_ratio, dtype=start.dtype)[None, None, :] + 0.5
    start, bin_size = start[:, None, None], bin_size[:, None, None]
    return start + p * bin_size + i * bin_size / float(sampling_ratio)


def _bilinear_axis(coords: tf.Tensor, size: tf.Tensor):
    """Pixel indices and bilinear weights of sample coordinates along one axis of length ``size``.

    Returns (low, high) int32 indices, always inside [0, size), and their
    weights (1 - frac, frac), both zero for a sample outside [-1, size]
    (torchvision's bilinear_interpolate).
    """
    size_f = tf.cast(size, coords.dtype)
    inside = tf.cast((coords >= -1.0) & (coords <= size_f), coords.dtype)
    coords = tf.maximum(coords, 0.0)
    low = tf.cast(tf.floor(coords), tf.int32)
    at_end = low >= size - 1
    low = tf.where(at_end, size - 1, low)
    high = tf.where(at_end, size - 1, low + 1)
    coords = tf.where(at_end, tf.cast(low, coords.dtype), coords)
    frac = coords - tf.cast(low, coords.dtype)
    return low, high, (1.0 - frac) * inside, frac * inside




def _dims(shape: tf.TensorShape) -> tuple | None:
    """A static shape as a tuple (None for unknown dimensions), or None for an unknown rank."""
    return None if shape.rank is None else tuple(shape.as_list())


__all__ = ["roi_align"]
