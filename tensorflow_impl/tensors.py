"""The one boundary where NHWC numpy data becomes TensorFlow tensors (NHWC: no transpose) and back."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from shared.data.validate import InputError, check_images


def resolve_device(name: str = "cpu") -> str:
    """``cpu``, ``cuda`` (error if absent) or ``auto`` -> a TensorFlow device string."""
    gpus = tf.config.list_physical_devices("GPU")
    if name == "auto":
        return "/GPU:0" if gpus else "/CPU:0"
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ValueError(f"unknown device {name!r}; expected one of ['cpu', 'cuda', 'auto']")
    if name.startswith("cuda"):
        if not gpus:
            raise RuntimeError(f"device {name!r} requested but TensorFlow sees no GPU")
        return f"/GPU:{name.split(':')[1] if ':' in name else 0}"
    return "/CPU:0"


def to_native(images: np.ndarray, *, channels: int | None = None, size: tuple[int, int] | None = None,
              device: str = "cpu") -> tf.Tensor:
    """[N, H, W, C] float32 numpy -> [N, H, W, C] tf tensor, after validating it (``check_images``)."""
    images = check_images(images, channels=channels, size=size)
    with tf.device(resolve_device(device)):
        return tf.convert_to_tensor(images)


def check_native(x, channels: int, size: tuple[int, int] | None = None) -> None:
    """A batch handed to a model directly (no ``predict``) must be NHWC with ``channels`` channels (and
    spatial ``size`` when the model has one): a clear error instead of a convolution's shape mismatch.
    Unknown dimensions (None, while Keras traces) pass."""
    shape = tuple(x.shape)
    expected = (*size, channels) if size else (None, None, channels)
    if len(shape) != 4 or any(d is not None and e is not None and d != e for d, e in zip(shape[1:], expected)):
        h, w = size or ("H", "W")
        raise InputError(f"images: expected a native batch of shape [N, {h}, {w}, {channels}] (NHWC); received "
                         f"shape {list(shape)}")


def to_numpy(tensor) -> np.ndarray:
    """A model output back to numpy (already NHWC)."""
    return np.asarray(tensor.numpy() if hasattr(tensor, "numpy") else tensor)


def targets_to_native(targets, device: str = "cpu"):
    """Task targets (numpy arrays, or dicts / lists of them) -> tf tensors, structure kept."""
    if isinstance(targets, dict):
        return {k: targets_to_native(v, device) for k, v in targets.items()}
    if isinstance(targets, (list, tuple)):
        return type(targets)(targets_to_native(v, device) for v in targets)
    with tf.device(resolve_device(device)):
        return tf.convert_to_tensor(targets)
