"""TensorFlow side of the weight bridge: Keras variables <-> canonical (PyTorch) keys and layouts.

Keras layers are named after the PyTorch attributes, so the key of a variable
is the path of layer names from the model down, joined by dots, plus torch's
parameter name; the tensor is transposed by the rule of its layer type
(shared/weights.py, TO_KERAS).
"""

from __future__ import annotations

import os

import keras
import numpy as np

from shared import weights as W

# Keras layer type -> (tensor kind, {Keras variable name: torch parameter name}).
_RULES: tuple[tuple[type, str, dict[str, str]], ...] = (
    (keras.layers.DepthwiseConv2D, "depthwise", {"kernel": "weight", "bias": "bias"}),
    (keras.layers.Conv2DTranspose, "conv_transpose", {"kernel": "weight", "bias": "bias"}),
    (keras.layers.Conv2D, "conv", {"kernel": "weight", "bias": "bias"}),
    (keras.layers.Dense, "dense", {"kernel": "weight", "bias": "bias"}),
    (keras.layers.BatchNormalization, "vector", {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
                                                 "moving_variance": "running_var"}),
)


def _children(layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    # Keras 3 has no public "direct sublayers" accessor on Layer; this is the one it uses itself.
    return list(layer._flatten_layers(include_self=False, recursive=False))


def variable_map(model: keras.layers.Layer) -> list[tuple[str, object, str]]:
    """(canonical key, Keras variable, tensor kind) for every weight of ``model``, in layer order."""
    out = []

    def walk(layer, prefix):
        for rule_type, kind, names in _RULES:
            if isinstance(layer, rule_type):
                for var in layer.weights:
                    short = var.path.rsplit("/", 1)[-1]
                    if short not in names:
                        raise W.WeightError(f"layer {prefix!r} ({type(layer).__name__}) has variable {short!r} "
                                            f"with no canonical name; known: {sorted(names)}")
                    # Only kernels change layout; biases and BatchNorm vectors are the same in both.
                    out.append((f"{prefix}.{names[short]}", var, kind if short == "kernel" else "vector"))
                return
        for child in _children(layer):
            walk(child, f"{prefix}.{child.name}" if prefix else child.name)

    walk(model, "")
    return out


def expected_layout(model: keras.layers.Layer) -> dict[str, tuple[int, ...]]:
    return {key: tuple(W.from_keras(kind, np.zeros(var.shape, np.float32)).shape)
            for key, var, kind in variable_map(model)}


def export_weights(model: keras.layers.Layer) -> dict[str, np.ndarray]:
    """Canonical tensors of ``model``: PyTorch names and shapes."""
    return {key: W.from_keras(kind, np.asarray(var.numpy())) for key, var, kind in variable_map(model)}


def import_weights(model: keras.layers.Layer, tensors: dict[str, np.ndarray], *,
                   source: str = "weights") -> keras.layers.Layer:
    """Load canonical tensors into ``model``; a missing, extra or mis-shaped key raises WeightError."""
    mapping = variable_map(model)
    W.check_layout({key: tuple(W.from_keras(kind, np.zeros(var.shape, np.float32)).shape)
                    for key, var, kind in mapping}, tensors, source=source)
    for key, var, kind in mapping:
        var.assign(W.to_keras(kind, np.asarray(tensors[key], dtype=np.float32)))
    return model


def gradients(model: keras.layers.Layer, variables: list, grads: list) -> dict[str, np.ndarray]:
    """``tape.gradient(loss, variables)`` results, keyed canonically and in canonical layout."""
    by_id = {id(v): g for v, g in zip(variables, grads) if g is not None}
    return {key: W.from_keras(kind, np.asarray(by_id[id(var)])) for key, var, kind in variable_map(model)
            if id(var) in by_id}


def save_weights(model: keras.layers.Layer, path: str | os.PathLike, metadata: dict | None = None):
    return W.save_file(export_weights(model), path, {"framework": "tensorflow", **(metadata or {})})


def load_weights(model: keras.layers.Layer, path: str | os.PathLike) -> keras.layers.Layer:
    return import_weights(model, W.load_file(path), source=f"weight file {str(path)!r}")
