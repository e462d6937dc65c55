"""Mixed precision in the TensorFlow twin: a Keras mixed dtype policy for the layers a model is built with.

Twin of ``pytorch_impl/precision.py``. Under ``mixed_bfloat16`` or ``mixed_float16`` every layer keeps
float32 variables and computes in the low format (Keras casts each layer's inputs to its compute dtype);
the outputs are cast back to float32 before the loss, as the Keras mixed-precision guide does for the last
layer. float16 gradients go through a static loss scale (``shared.precision.LOSS_SCALE``), as Keras'
LossScaleOptimizer would apply a dynamic one.
"""

from __future__ import annotations

from contextlib import contextmanager

import keras
import numpy as np
import tensorflow as tf

from shared.precision import LOSS_SCALE, check_precision

from . import bridge
from .tensors import resolve_device, to_native

POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


@contextmanager
def policy(precision: str):
    """Keras' global dtype policy set to ``precision``'s for the models built inside, then restored."""
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(POLICIES[check_precision(precision)])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


def build_model(task, spec, precision: str):
    """``task.build_model(spec)`` with its layers computing at ``precision`` (variables float32)."""
    with policy(precision):
        return task.build_model(spec)


def _check_built_at(model, precision: str) -> None:
    built = model.dtype_policy.name
    if built != POLICIES[check_precision(precision)]:
        raise ValueError(f"the model was built with dtype policy {built!r}; precision {precision!r} needs "
                         f"{POLICIES[precision]!r} (build it with tensorflow_impl.precision.build_model)")


def forward(model, images: np.ndarray, spec, precision: str, device: str = "cpu") -> dict[str, np.ndarray]:
    """The model's outputs on NHWC ``images`` in inference mode, as float32 numpy; ``precision`` must be the
    one the model was built with."""
    _check_built_at(model, precision)
    with tf.device(resolve_device(device)):
        out = model(to_native(images, channels=spec.input_shape[-1], device=device), training=False)
    return {k: np.asarray(tf.cast(v, tf.float32)) for k, v in out.items()}


def loss_and_gradients(model, spec, loss_fn, images: np.ndarray, targets, precision: str, device: str = "cpu"
                       ) -> tuple[float, dict[str, np.ndarray]]:
    """The training loss on one batch (training mode) and every variable's gradient, canonical keys, for a
    model built at ``precision``; no update."""
    _check_built_at(model, precision)
    variables = model.trainable_variables
    scale = LOSS_SCALE[precision]
    with tf.device(resolve_device(device)), tf.GradientTape() as tape:
        out = model(to_native(images, channels=spec.input_shape[-1], device=device), training=True)
        loss = loss_fn({k: tf.cast(v, tf.float32) for k, v in out.items()}, tf.convert_to_tensor(targets), spec)["loss"]
        scaled = loss * scale
    grads = [None if g is None else g / scale for g in tape.gradient(scaled, variables)]
    return float(loss), bridge.gradients(model, variables, grads)


# Names only this twin has, with the reason (the structure test reads this).
FRAMEWORK_SPECIFIC = {
    "POLICIES": "Keras names mixed precision by policy ('mixed_bfloat16'); torch by dtype (pytorch_impl.precision)",
    "policy": "Keras fixes a layer's compute dtype when the model is built; torch's autocast acts when it is called",
}

__all__ = ["POLICIES", "build_model", "forward", "loss_and_gradients", "policy"]
