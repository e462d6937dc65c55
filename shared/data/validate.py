"""Input checks at the boundary of every model: a clear error instead of a shape trace."""

from __future__ import annotations

import numpy as np


class InputError(ValueError):
    """An image batch or label array that a model cannot take."""


def check_images(images, *, channels: int | None = None, size: tuple[int, int] | None = None,
                 name: str = "images") -> np.ndarray:
    """Validate an NHWC float32 batch and return it as a numpy array.

    Raises InputError naming the bad value and what was expected: rank other
    than 4, a channel count other than ``channels``, a spatial size other than
    ``size`` (when given), a dtype other than float32, or NaN / inf values.
    """
    if not isinstance(images, np.ndarray):
        raise InputError(f"{name}: expected a numpy array of shape [N, H, W, C]; received {type(images).__name__}")
    if images.ndim != 4:
        raise InputError(f"{name}: expected rank 4 [N, H, W, C] (NHWC); received shape {images.shape} "
                         f"(rank {images.ndim})")
    if channels is not None and images.shape[-1] != channels:
        hint = " (is it NCHW? data crosses the boundary as NHWC)" if images.shape[1] == channels else ""
        raise InputError(f"{name}: expected {channels} channels in the last axis (NHWC); received shape "
                         f"{images.shape}{hint}")
    if size is not None and tuple(images.shape[1:3]) != tuple(size):
        raise InputError(f"{name}: expected spatial size {tuple(size)}; received {tuple(images.shape[1:3])}")
    if images.dtype != np.float32:
        raise InputError(f"{name}: expected dtype float32; received {images.dtype}")
    if images.shape[0] == 0:
        raise InputError(f"{name}: expected at least one image; received an empty batch {images.shape}")
    if not np.isfinite(images).all():
        bad = int((~np.isfinite(images)).sum())
        raise InputError(f"{name}: expected finite values; received {bad} NaN/inf values")
    return images


def check_labels(labels, *, num_classes: int, n: int | None = None, name: str = "labels") -> np.ndarray:
    """Validate integer class labels in [0, num_classes)."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"{name}: expected a 1-D integer array; received shape {labels.shape}, dtype {labels.dtype}")
    if n is not None and labels.shape[0] != n:
        raise InputError(f"{name}: expected {n} labels (one per image); received {labels.shape[0]}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise InputError(f"{name}: expected values in [0, {num_classes}); received range "
                         f"[{labels.min()}, {labels.max()}]")
    return labels.astype(np.int64)


def check_calibration(images, spec, *, name: str = "representative data") -> np.ndarray:
    """Validate the representative / calibration images a quantizer is given: the model's input shape, non-empty."""
    if images is None:
        raise InputError(f"{name}: expected images of shape [N, {', '.join(map(str, spec.input_shape))}]; "
                         f"received None")
    h, w, c = spec.input_shape
    return check_images(images, channels=c, size=(h, w), name=name)
