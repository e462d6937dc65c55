"""Deployment artifacts of a TensorFlow twin: ONNX through tf2onnx.

``tf2onnx.convert.from_function`` on a traced ``tf.function`` (its Keras entry
point fails on Keras 3 models, DEPENDENCIES.md fact 5). The graph keeps the
NHWC input; its ONNX metadata says so (``twinvision.layout``) and names the
outputs in the spec's key order, exactly as ``pytorch_impl/export.py`` does.
"""

from __future__ import annotations

import os
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


def _rename_outputs(proto: onnx.ModelProto, keys) -> None:
    # tf2onnx names outputs after graph tensors ("Identity:0"); give them the spec's keys.
    renames = {out.name: key for out, key in zip(proto.graph.output, keys)}
    for node in proto.graph.node:
        node.output[:] = [renames.get(name, name) for name in node.output]
    for out in proto.graph.output:
        out.name = renames[out.name]


def _set_metadata(proto: onnx.ModelProto, **values) -> None:
    for key, value in values.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = f"twinvision.{key}", ",".join(value) if isinstance(value, tuple) else str(value)
