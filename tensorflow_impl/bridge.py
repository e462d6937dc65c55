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
# An LSTM is mapped by ``_lstm_entries`` (before these rules: keras' Bidirectional is a wrapper).
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
    """(canonical key, Keras variable, tensor kind) for every weight of ``model``, in layer order.

    A key of kind ``W.ADDEND`` has no variable of its own: the variable is the one of the key before it, which
    holds the sum of both canonical tensors (an LSTM's two torch biases in Keras' one)."""
    out = []

    def walk(layer, prefix):
        if isinstance(layer, keras.layers.Bidirectional):
            out.extend(_lstm_entries(layer, prefix))
            return
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


def _lstm_entries(layer: keras.layers.Bidirectional, prefix: str) -> list[tuple[str, object, str]]:
    """One bidirectional layer of torch's ``nn.LSTM``: the Keras layer named ``l<k>`` inside the LSTM named
    ``<parent>`` maps to ``<parent>.weight_ih_l<k>`` (its kernel, (in, 4H) for torch's (4H, in)),
    ``weight_hh_l<k>`` (the recurrent kernel), ``bias_ih_l<k>`` (Keras' one bias: the sum of torch's two) and
    ``bias_hh_l<k>`` (an addend, zero on the way out), then the same with ``_reverse`` for the backward layer.
    Both frameworks order the four gates input, forget, cell, output, so no block moves."""
    parent, _, suffix = prefix.rpartition(".")
    out = []
    for direction, rnn in (("", layer.forward_layer), ("_reverse", layer.backward_layer)):
        cell = rnn.cell
        out += [(f"{parent}.weight_ih_{suffix}{direction}", cell.kernel, "dense"),
                (f"{parent}.weight_hh_{suffix}{direction}", cell.recurrent_kernel, "dense"),
                (f"{parent}.bias_ih_{suffix}{direction}", cell.bias, "vector"),
                (f"{parent}.bias_hh_{suffix}{direction}", cell.bias, W.ADDEND)]
    return out


def expected_layout(model: keras.layers.Layer) -> dict[str, tuple[int, ...]]:
    return {key: tuple(W.from_keras(kind, np.zeros(var.shape, np.float32)).shape)
            for key, var, kind in variable_map(model)}


def export_weights(model: keras.layers.Layer) -> dict[str, np.ndarray]:
    """Canonical tensors of ``model``: PyTorch names and shapes."""
    return {key: np.zeros(var.shape, np.float32) if kind == W.ADDEND else W.from_keras(kind, np.asarray(var.numpy()))
            for key, var, kind in variable_map(model)}


def import_weights(model: keras.layers.Layer, tensors: dict[str, np.ndarray], *,
                   source: str = "weights") -> keras.layers.Layer:
    """Load canonical tensors into ``model``; a missing, extra or mis-shaped key raises WeightError."""
    mapping = variable_map(model)
    W.check_layout({key: tuple(W.from_keras(kind, np.zeros(var.shape, np.float32)).shape)
                    for key, var, kind in mapping}, tensors, source=source)
    values: dict[int, tuple[object, np.ndarray]] = {}
    for key, var, kind in mapping:
        value = W.to_keras(kind, np.asarray(tensors[key], dtype=np.float32))
        values[id(var)] = (var, values[id(var)][1] + value if kind == W.ADDEND else value)
    for var, value in values.values():
        var.assign(value)
    return model


def gradients(model: keras.layers.Layer, variables: list, grads: list) -> dict[str, np.ndarray]:
    """``tape.gradient(loss, variables)`` results, keyed canonically and in canonical layout."""
    by_id = {id(v): g for v, g in zip(variables, grads) if g is not None}
    # An addend has no gradient of its own (torch holds it as a zero buffer: pytorch_impl/ocr/model.py, LSTM).
    return {key: W.from_keras(kind, np.asarray(by_id[id(var)])) for key, var, kind in variable_map(model)
            if id(var) in by_id and kind != W.ADDEND}


def save_weights(model: keras.layers.Layer, path: str | os.PathLike, metadata: dict | None = None):
    return W.save_file(export_weights(model), path, {"framework": "tensorflow", **(metadata or {})})


def load_weights(model: keras.layers.Layer, path: str | os.PathLike) -> keras.layers.Layer:
    return import_weights(model, W.load_file(path), source=f"weight file {str(path)!r}")
