"""Deployment artifacts of a TensorFlow twin: ONNX through tf2onnx, a SavedModel,
the Keras ``.keras`` file and TFLite (float32).

``tf2onnx.convert.from_function`` on a traced ``tf.function`` (its Keras entry
point fails on Keras 3 models, docs/DEPENDENCIES.md). The graph keeps the
NHWC input; its ONNX metadata says so (``twinvision.layout``) and names the
outputs in the spec's key order, exactly as ``pytorch_impl/export.py`` does.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import keras
import onnx
import tensorflow as tf

from shared.weights import write_atomic

ONNX_OPSET = 18


def _tuple_outputs(model: keras.Model, spec) -> tf.types.experimental.GenericFunction:
    """The model with its output dict flattened to a tuple in the spec's key order (ONNX outputs are positional)."""
    h, w, c = spec.input_shape
    keys = tuple(spec.output_keys)

    @tf.function(input_signature=[tf.TensorSpec([None, h, w, c], tf.float32, name="images")])
    def forward(x):
        out = model(x, training=False)
        return tuple(out[k] for k in keys)

    return forward


def export_onnx(model: keras.Model, spec, path: str | os.PathLike) -> Path:
    """Write ``model`` as ONNX with a dynamic batch axis; returns the path."""
    import tf2onnx

    path = Path(path)
    forward = _tuple_outputs(model, spec)
    proto, _ = tf2onnx.convert.from_function(forward, input_signature=forward.input_signature,
                                             opset=ONNX_OPSET, output_path=None)
    _rename_outputs(proto, spec.output_keys)
    _set_metadata(proto, layout="NHWC", outputs=spec.output_keys, source="tensorflow")
    write_atomic(path, proto.SerializeToString())
    return path


def export_program(model: keras.Model, spec, path: str | os.PathLike) -> Path:
    """Write ``model`` as a SavedModel folder (Keras' own export) whose ``serve`` endpoint returns the output dict.

    Keras' exporter, not a hand-made ``tf.Module``: TFLite converted from the
    latter kept its variables unfrozen and output NaN.
    """
    path = Path(path)
    h, w, c = spec.input_shape
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.export(str(tmp), format="tf_saved_model", verbose=False,
                 input_signature=[tf.TensorSpec([None, h, w, c], tf.float32, name="images")])
    shutil.rmtree(path, ignore_errors=True)
    tmp.replace(path)
    return path


def export_tflite(saved_model: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Convert a SavedModel (from ``export_program``) to a float32 TFLite flatbuffer.

    Converting from the SavedModel, not from concrete functions: the latter once
    produced a weightless model that outputs NaN (docs/DEPENDENCIES.md).
    """
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    return write_atomic(path, converter.convert())


def save_keras(model: keras.Model, path: str | os.PathLike) -> Path:
    """Save the whole Keras model (architecture from ``get_config`` plus weights) as ``.keras``."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}")
    model.save(tmp)
    tmp.replace(path)
    return path


# Artifacts only one framework can produce, with the reason (the structure test reads this).
FRAMEWORK_SPECIFIC = {
    "export_tflite": "TFLite converts TensorFlow graphs; PyTorch has no converter to it in this stack",
    "save_keras": "the .keras format is Keras' own; torch's whole-model save is pickle, which this project never uses",
}


def _rename_outputs(proto: onnx.ModelProto, keys) -> None:
    # tf2onnx names outputs after graph tensors ("Identity:0"); give them the spec's keys, where they are made and
    # where other nodes read them (an output may feed the rest of the graph: the export view's feature map).
    renames = {out.name: key for out, key in zip(proto.graph.output, keys)}
    for node in proto.graph.node:
        node.output[:] = [renames.get(name, name) for name in node.output]
        node.input[:] = [renames.get(name, name) for name in node.input]
    for out in proto.graph.output:
        out.name = renames[out.name]


def _set_metadata(proto: onnx.ModelProto, **values) -> None:
    for key, value in values.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = f"twinvision.{key}", ",".join(value) if isinstance(value, tuple) else str(value)
