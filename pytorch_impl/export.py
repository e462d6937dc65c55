"""Deployment artifacts of a PyTorch twin: ONNX through the dynamo exporter, and a
``torch.export`` ExportedProgram (.pt2).

The exported graph keeps torch's native NCHW input; its ONNX metadata says so
(``twinvision.layout``) and names the outputs in the spec's key order, so a
runner feeds it the same NHWC data as every other backend.
"""

from __future__ import annotations

import os
from pathlib import Path

import onnx
import torch
from torch import nn

from shared.weights import write_atomic

ONNX_OPSET = 18


class _TupleOutputs(nn.Module):
    """The model with its output dict flattened to a tuple in ``keys`` order (ONNX outputs are positional)."""

    def __init__(self, model: nn.Module, keys: tuple[str, ...]):
        super().__init__()
        self.model, self.keys = model, keys

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(x)
        return tuple(out[k] for k in self.keys)


def export_onnx(model: nn.Module, spec, path: str | os.PathLike, batch: int = 2) -> Path:
    """Write ``model`` as ONNX with a dynamic batch axis; returns the path."""
    path = Path(path)
    h, w, c = spec.input_shape
    example = torch.zeros(batch, c, h, w)
    wrapper = _TupleOutputs(_inference_mode(model), tuple(spec.output_keys))
    program = torch.onnx.export(
        wrapper, (example,), dynamo=True, opset_version=ONNX_OPSET, input_names=["images"],
        output_names=list(spec.output_keys), dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=4096)}},
        verbose=False)
    proto = program.model_proto
    _strip_debug_info(proto)
    _set_metadata(proto, layout="NCHW", outputs=spec.output_keys, source="torch")
    write_atomic(path, proto.SerializeToString())
    return path


def export_program(model: nn.Module, spec, path: str | os.PathLike, batch: int = 2) -> Path:
    """Write ``model`` as a torch.export ExportedProgram (.pt2) with a dynamic batch axis."""
    path = Path(path)
    h, w, c = spec.input_shape
    wrapper = _TupleOutputs(_inference_mode(model), tuple(spec.output_keys))
    program = torch.export.export(wrapper, (torch.zeros(batch, c, h, w),),
                                  dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=4096)}})
    tmp = path.with_name(f".tmp-{path.name}")  # torch.export wants the .pt2 suffix
    torch.export.save(program, tmp)
    tmp.replace(path)
    return path


# Artifacts only one framework can produce, with the reason (the structure test reads this).
FRAMEWORK_SPECIFIC = {
    "export_tflite": "TFLite converts TensorFlow graphs; PyTorch has no converter to it in this stack",
    "save_keras": "the .keras format is Keras' own; torch's whole-model save is pickle, which this project never uses",
}


def _inference_mode(model: nn.Module) -> nn.Module:
    """``model`` in eval mode; an exported graph (a pt2e int8 model) is already fixed and refuses ``eval()``."""
    if isinstance(model, torch.fx.GraphModule):
        return model
    return model.eval().cpu()


def _strip_debug_info(proto: onnx.ModelProto) -> None:
    """Drop the exporter's per-node provenance (Python stack traces with this machine's paths, fx node text).

    It is debugging aid, not model: about 0.6 KB per node, 10% of a small
    model's file, and it would make the artifact differ between checkouts.
    """
    for node in proto.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""


def _set_metadata(proto: onnx.ModelProto, **values) -> None:
    for key, value in values.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = f"twinvision.{key}", ",".join(value) if isinstance(value, tuple) else str(value)
