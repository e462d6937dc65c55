"""The detection task's models (TensorFlow / Keras 3 twin): the detector ``spec.model.detector`` names, through the table of
detectors (``detectors.py``), and eval-mode outputs for numpy images. Reads line for line like
``pytorch_impl/detection/model.py``.
"""

from __future__ import annotations

import weakref

import keras
import numpy as np
import tensorflow as tf

from shared.data.validate import check_images
from shared.specs.detection import DetectionSpec

from ..tensors import resolve_device, to_native, to_numpy
from .detectors import detector


def build_model(spec: DetectionSpec) -> keras.Model:
    """The detector ``spec.model.detector`` names: SSD-, YOLO- or Faster R-CNN-style, its variables created."""
    model = detector(spec).build(spec, name=spec.model.detector)
    model(keras.ops.zeros((1, *spec.input_shape)))  # create the variables now (Keras builds lazily)
    return model


def export_view(model, spec: DetectionSpec):
    """The part of ``model`` an exported graph holds, and its output keys: the whole network, except for
    the Faster R-CNN-style detector, whose graph stops at the RPN (``spec.export_limit`` says why)."""
    return detector(spec).export_view(model, spec)


def predict(model, images: np.ndarray, *, with_features: bool = False, batch_size: int = 64,
            device: str = "cpu") -> dict[str, np.ndarray]:
    """Eval-mode head outputs for NHWC numpy images: ``cls_logits`` [N, A, K + 1], ``box_regression`` [N, A, 4].

    With ``with_features``, every anchor level's map too, as ``features.<l>``: [N, H_l, W_l, C_l].
    """
    h, w, c = model.spec.input_shape
    x_all = to_native(check_images(images, channels=c, size=(h, w)), device=device)
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
