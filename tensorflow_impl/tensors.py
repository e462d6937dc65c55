"""The one boundary where NHWC numpy data becomes TensorFlow tensors (NHWC: no transpose) and back."""

from __future__ import annotations

import weakref

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


def batched_outputs(model, images: np.ndarray, *, with_features: bool = False, batch_size: int = 64,
                    device: str = "cpu") -> dict[str, np.ndarray]:
    """Eval-mode outputs of a model with ``forward_features`` (its maps, shallow to deep) and ``forward_head``
    (maps -> a dict of outputs) for NHWC numpy images at ``model.spec.input_shape``, as NHWC numpy, in batches;
    with ``with_features``, every map too, as ``features.<i>``. The ``predict`` of the detectors and segmenters."""
    h, w, c = model.spec.input_shape
    x_all = to_native(images, channels=c, size=(h, w), device=device)
    forward = _inference_fn(model, with_features)
    chunks: dict[str, list[np.ndarray]] = {}
    with tf.device(resolve_device(device)):
        for start in range(0, x_all.shape[0], batch_size):
            for key, value in forward(x_all[start:start + batch_size]).items():
                chunks.setdefault(key, []).append(to_numpy(value))
    return {key: np.concatenate(parts) for key, parts in chunks.items()}


_INFERENCE_FNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _inference_fn(model, with_features: bool):
    # One traced graph per model and output set (tf.function), as Keras' predict would use.
    cache = _INFERENCE_FNS.setdefault(model, {})
    if with_features not in cache:
        @tf.function(reduce_retracing=True)
        def forward(x):
            features = model.forward_features(x, training=False)
            out = model.forward_head(features)
            if with_features:
                out.update({f"features.{i}": f for i, f in enumerate(features)})
            return out
        cache[with_features] = forward
    return cache[with_features]
