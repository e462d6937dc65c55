"""Quantization and pruning of a TensorFlow twin (seed answers 11 and 28).

* TFLite float16, dynamic-range and full-integer int8 (calibrated on
  representative images), all converted from the SavedModel;
* quantization-aware training, magnitude pruning and weight clustering with
  tensorflow-model-optimization. tfmot accepts only tf_keras (Keras 2) models
  and refuses Keras 3 ones, so ``build_functional`` builds the same network
  from the spec with whichever Keras module it is given, and the trained
  Keras 3 weights are copied in by their canonical names.

The PyTorch twin, ``pytorch_impl/quantize.py``, does the same with pt2e and torch.nn.utils.prune.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from shared import weights as W
from shared.data import batch_plan
from shared.data.validate import check_calibration
from shared.weights import write_atomic

TFLITE_MODES = ("fp16", "dynamic", "int8")


class UnsupportedOpError(ValueError):
    """A layer the quantization toolkit cannot handle."""


def tfmot():
    """tensorflow-model-optimization, imported without leaving TF_USE_LEGACY_KERAS=1 behind (it sets it)."""
    before = os.environ.get("TF_USE_LEGACY_KERAS")
    import tensorflow_model_optimization

    if before is None:
        os.environ.pop("TF_USE_LEGACY_KERAS", None)
    return tensorflow_model_optimization


def to_tflite(source, path: str | os.PathLike, mode: str, representative: np.ndarray | None = None,
              spec=None) -> Path:
    """Convert a SavedModel folder (or a tf_keras model) to TFLite in ``mode``: fp16, dynamic or int8.

    int8 is full-integer: weights and activations int8, calibrated on
    ``representative``; the model keeps float32 input and output so it drops in
    beside the float backends.
    """
    if mode not in TFLITE_MODES:
        raise ValueError(f"unknown TFLite mode {mode!r}; expected one of {list(TFLITE_MODES)}")
    if isinstance(source, (str, os.PathLike)):
        converter = tf.lite.TFLiteConverter.from_saved_model(str(source))
    else:
        converter = tf.lite.TFLiteConverter.from_keras_model(source)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "int8":
        images = check_calibration(representative, spec)
        converter.representative_dataset = lambda: ([images[i:i + 1]] for i in range(len(images)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return write_atomic(path, converter.convert())


# -- the same network as a functional model, in either Keras ---------------------------------------

def build_functional(spec, K):
    """The spec's model as a functional model of built-in layers of Keras module ``K`` (keras or tf_keras), as
    its task's TensorFlow twin builds it (``build_functional`` of ``tensorflow_impl.<task>``; the classifier's
    ResNet today). Layer names are the canonical (PyTorch) paths, so weights copy in by name."""
    task = importlib.import_module(f"{__package__}.{spec.task}")
    build = getattr(task, "build_functional", None)
    if build is None:
        raise UnsupportedOpError(f"build_functional: task {spec.task!r} has no tf_keras functional twin "
                                 f"(tensorflow_impl/{spec.task} defines no build_functional), so tfmot cannot "
                                 f"take it")
    return build(spec, K)


_FUNCTIONAL_PARAMS = {"Conv2D": ("conv", ["weight", "bias"]), "Dense": ("dense", ["weight", "bias"]),
                      "BatchNormalization": ("vector", ["weight", "bias", "running_mean", "running_var"])}


def load_canonical(functional, tensors: dict[str, np.ndarray]):
    """Copy canonical (PyTorch-layout) tensors into a model from ``build_functional``, by layer name."""
    used = set()
    for layer in functional.layers:
        kind_names = _FUNCTIONAL_PARAMS.get(type(layer).__name__)
        if not kind_names or not layer.weights:
            continue
        kind, names = kind_names
        values = []
        for i, name in enumerate(names[:len(layer.weights)]):
            key = f"{layer.name}.{name}"
            if key not in tensors:
                raise W.WeightError(f"functional layer {layer.name!r} needs {key!r}, which the weights lack")
            values.append(W.to_keras(kind if i == 0 else "vector", np.asarray(tensors[key], np.float32)))
            used.add(key)
        layer.set_weights(values)
    extra = sorted(set(tensors) - used)
    if extra:
        raise W.WeightError(f"weights not used by the functional model: {extra}")
    return functional


# -- tensorflow-model-optimization ------------------------------------------------------------------

def _tf_keras_model(tensors, spec):
    import tf_keras

    return load_canonical(build_functional(spec, tf_keras), tensors)


def _fit(model, spec, split, steps: int, lr: float, optimizer=None, callbacks=()) -> None:
    """Fine-tune ``steps`` batches (the same batch order as the PyTorch twin's fine-tunes), SGD by default."""
    import tf_keras

    batches = [idx for epoch in batch_plan(len(split), spec.train.batch_size, steps, spec.train.seed)
               for idx in epoch][:steps]
    order = np.concatenate(batches)
    model.compile(optimizer=optimizer or tf_keras.optimizers.SGD(lr, momentum=0.9), loss=_task_loss(spec))
    model.fit(split.images[order], split.targets[order], batch_size=spec.train.batch_size, epochs=1,
              shuffle=False, verbose=0, callbacks=list(callbacks))


def _task_loss(spec):
    """The task's own loss (its twin's ``compute_loss``, as the PyTorch side's fine-tunes use) as a tf_keras loss
    of (targets, logits): cross-entropy for a classifier, the distillation loss for a distilled student."""
    import importlib

    compute_loss = importlib.import_module(f"{__package__}.{spec.task}").compute_loss
    return lambda targets, logits: compute_loss({"logits": logits}, targets, spec)["loss"]


def quantize_qat(tensors: dict[str, np.ndarray], spec, split, steps: int, lr: float,
                 path: str | os.PathLike) -> Path:
    """Quantization-aware fine-tuning with tfmot (tf_keras twin of the model), then TFLite int8."""
    model = tfmot().quantization.keras.quantize_model(_tf_keras_model(tensors, spec))
    _fit(model, spec, split, steps, lr)
    return to_tflite(model, path, "dynamic")  # QAT already fixed every range: DEFAULT gives the int8 model


def prune(tensors: dict[str, np.ndarray], spec, split, sparsity: float, steps: int, lr: float,
          path: str | os.PathLike) -> Path:
    """Magnitude pruning to ``sparsity`` on a schedule over ``steps`` batches (tfmot), as float TFLite."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity: expected a fraction in [0, 1); received {sparsity!r}")
    sparsity_api = tfmot().sparsity.keras
    # Sparsity ramps up over the first 2/3 of the steps and the rest fine-tunes at the target;
    # frequency=1 updates the masks every step (the default, 100, would never prune a short fine-tune).
    schedule = sparsity_api.PolynomialDecay(0.0, sparsity, begin_step=0, end_step=max(2 * steps // 3, 1),
                                            frequency=1)
    model = sparsity_api.prune_low_magnitude(_tf_keras_model(tensors, spec), pruning_schedule=schedule)
    _fit(model, spec, split, steps, lr, callbacks=[sparsity_api.UpdatePruningStep()])
    return _float_tflite(sparsity_api.strip_pruning(model), path)


def cluster(tensors: dict[str, np.ndarray], spec, split, clusters: int, steps: int, lr: float,
            path: str | os.PathLike) -> Path:
    """Weight clustering to ``clusters`` shared values per kernel (tfmot), fine-tuned, as float TFLite."""
    clustering = tfmot().clustering.keras
    model = clustering.cluster_weights(_tf_keras_model(tensors, spec), number_of_clusters=clusters,
                                       cluster_centroids_init=clustering.CentroidInitialization.KMEANS_PLUS_PLUS)
    # Adam, not SGD: a centroid's gradient is the sum over every weight it stands for (thousands), and
    # SGD's step on that sum wrecked the model (chance accuracy after 40 steps, measured); Adam's
    # per-parameter scaling does not care. ``lr`` is Adam's step: keep it small (1e-4), the centroids
    # start at k-means++.
    import tf_keras

    _fit(model, spec, split, steps, lr, optimizer=tf_keras.optimizers.Adam(lr))
    return _float_tflite(clustering.strip_clustering(model), path)


def _float_tflite(model, path) -> Path:
    return write_atomic(path, tf.lite.TFLiteConverter.from_keras_model(model).convert())


# Quantizers one framework alone has, with the reason (the structure test reads this).
FRAMEWORK_SPECIFIC = {
    "to_tflite": "TFLite's float16, dynamic-range and int8 converters exist for TensorFlow graphs only",
    "cluster": "weight clustering ships in tensorflow-model-optimization; torch has no clustering API in core",
    "build_functional": "tfmot needs a tf_keras model: the same network rebuilt with the Keras module it is given",
    "load_canonical": "copies canonical weights into that functional rebuild",
    "tfmot": "imports tensorflow-model-optimization without leaking its TF_USE_LEGACY_KERAS setting",
    "UnsupportedOpError": "raised for layers tfmot cannot quantize (L2 pooling)",
    "TFLITE_MODES": "the TFLite conversion modes",
}
