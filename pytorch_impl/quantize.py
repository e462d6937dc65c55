"""Quantization and pruning of a PyTorch twin (seed answers 11 and 28).

* static int8 (post-training) and quantization-aware training through the
  pt2e flow of torchao with the x86 inductor quantizer: per-channel int8
  weights, per-tensor int8 activations, lowered to oneDNN's int8 kernels
  (``lower_for_cpu``); on a
  CPU without VNNI the weights use 7 bits (``shared.cpu.int8_setting``), so
  the u8 x s8 kernels of oneDNN and ONNX Runtime cannot saturate;
* dynamic int8 quantization of the dense layers (``torch.ao``; deprecated but working);
* global magnitude pruning (``torch.nn.utils.prune``) with a short fine-tune.

The TensorFlow twin, ``tensorflow_impl/quantize.py``, does the same with TFLite
and tensorflow-model-optimization.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from shared.data import batch_plan, training_targets
from shared.cpu import Int8Setting, int8_setting
from shared.data.validate import check_calibration
from shared.weights import save_file

from .tensors import to_native, targets_to_native
from .training import Trainer

CALIBRATION_BATCH = 32


def _quantizer(is_qat: bool, int8: Int8Setting):
    import dataclasses

    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq

    config = xiq.get_default_x86_inductor_quantization_config(is_qat=is_qat)
    if int8.reduce_range:
        # 7-bit weights rather than torchao's reduce_range (7-bit activations): an activation's range is a
        # clamp that ONNX's QuantizeLinear does not carry (it saturates to all of uint8), so only a weight
        # range keeps the exported graph's u8 x s8 pairs inside int16 too. Weights are constants: exact.
        low, high = int8.weight_range
        config = dataclasses.replace(config, weight=dataclasses.replace(config.weight, quant_min=low,
                                                                        quant_max=high))
    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(config)
    return quantizer


def _export(model: nn.Module, example: torch.Tensor) -> torch.fx.GraphModule:
    batch = torch.export.Dim("batch", min=1, max=4096)
    return torch.export.export(model, (example,), dynamic_shapes={"x": {0: batch}}).module()


def _strip_unused(graph_module: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Drop what conversion left behind: float parameters (the graph reads the int8 copies) and,
    after QAT, BatchNorm's in-place ``num_batches_tracked += 1`` (training bookkeeping that an
    int8 inference graph must not mutate)."""
    graph = graph_module.graph
    for node in list(graph.nodes):
        if (node.op == "call_function" and node.target is torch.ops.aten.add_.Tensor
                and node.args[0].op == "get_attr" and str(node.args[0].target).endswith("num_batches_tracked")):
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
    graph.eliminate_dead_code()
    graph_module.recompile()
    used = {node.target for node in graph_module.graph.nodes if node.op == "get_attr"}
    names = [*dict(graph_module.named_parameters()), *dict(graph_module.named_buffers())]
    for name in names:
        if name not in used:
            owner_name, _, leaf = name.rpartition(".")
            delattr(graph_module.get_submodule(owner_name) if owner_name else graph_module, leaf)
    return graph_module


def quantize_static(model: nn.Module, spec, calibration: np.ndarray,
                    int8: Int8Setting | None = None) -> torch.fx.GraphModule:
    """Post-training static int8: calibrate activation ranges on ``calibration`` (NHWC images).

    int8: the weight range for the CPU's kernels (default: ``shared.cpu.int8_setting()`` of this machine).
    """
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    images = check_calibration(calibration, spec)
    model = copy.deepcopy(model).eval().cpu()
    prepared = prepare_pt2e(_export(model, to_native(images[:2])), _quantizer(False, int8 or int8_setting()))
    with torch.no_grad():
        for start in range(0, len(images), CALIBRATION_BATCH):
            prepared(to_native(images[start:start + CALIBRATION_BATCH]))
    return _strip_unused(convert_pt2e(prepared))


def quantize_qat(model: nn.Module, spec, split, steps: int, lr: float,
                 int8: Int8Setting | None = None) -> torch.fx.GraphModule:
    """Quantization-aware fine-tuning (fake-quant in the forward pass) for ``steps`` batches, then int8."""
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e

    images = check_calibration(split.images, spec)
    model = copy.deepcopy(model).train().cpu()
    prepared = prepare_qat_pt2e(_export(model, to_native(images[:2])), _quantizer(True, int8 or int8_setting()))
    optimizer = torch.optim.SGD(prepared.parameters(), lr=lr, momentum=0.9)
    loss_fn = _loss_fn(spec)
    targets = training_targets(split, spec)
    batches = [idx for epoch in batch_plan(len(images), spec.train.batch_size, steps, spec.train.seed)
               for idx in epoch][:steps]
    for idx in batches:
        losses = loss_fn(prepared(to_native(images[idx])), targets_to_native(targets[idx]), spec)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
    move_exported_model_to_eval(prepared)
    return _strip_unused(convert_pt2e(prepared))


def lower_for_cpu(model: torch.fx.GraphModule, example: torch.Tensor) -> torch.fx.GraphModule:
    """The pt2e int8 graph lowered to oneDNN's x86 int8 kernels (qconv / qlinear with fused post-ops), for
    inputs shaped like ``example`` (torchao's lowering: export, inductor's freezing passes, constant folding).

    The converted graph itself computes float convolutions between quantize / dequantize pairs: int8
    numerics at float speed or worse. ``torch.compile`` of it without freezing keeps that form (measured:
    ResNet-18 at 224, batch 1, 50 ms against 12 ms lowered and 27 ms compiled fp32, AMD EPYC Zen 4).
    """
    from torchao.quantization.pt2e.lowering import lower_pt2e_quantized_to_x86

    with torch.no_grad():
        return lower_pt2e_quantized_to_x86(model, (example,))


def quantize_dynamic(model: nn.Module) -> nn.Module:
    """Dynamic int8 of the dense layers only (the only layers the dynamic flow covers in a CNN)."""
    return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model).eval().cpu(), {nn.Linear}, dtype=torch.qint8)


def prune(model: nn.Module, spec, split, sparsity: float, steps: int, lr: float) -> nn.Module:
    """Global L1 magnitude pruning of every conv and dense kernel to ``sparsity``, fine-tuned ``steps`` batches."""
    from torch.nn.utils import prune as torch_prune

    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity: expected a fraction in [0, 1); received {sparsity!r}")
    model = copy.deepcopy(model).cpu()
    targets = [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    torch_prune.global_unstructured(targets, pruning_method=torch_prune.L1Unstructured, amount=sparsity)
    trainer = Trainer(model, spec, _loss_fn(spec), lr=lr, total_steps=steps)
    batches = [idx for epoch in batch_plan(len(split), spec.train.batch_size, steps, spec.train.seed)
               for idx in epoch][:steps]
    x = to_native(split.images)
    y = targets_to_native(training_targets(split, spec))
    for idx in batches:
        trainer.step(x[torch.as_tensor(idx)], y[torch.as_tensor(idx)])
    for module, name in targets:
        torch_prune.remove(module, name)  # make the zeros permanent
    return model.eval()


def save_int8(model: torch.fx.GraphModule, spec, path: str | os.PathLike) -> Path:
    """The quantized model's own tensors (int8 weights, scales, zero points) as safetensors."""
    tensors = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    return save_file(tensors, path, {"format": "torch pt2e int8 state", "task": spec.task})


# Quantizers one framework alone has, with the reason (the structure test reads this).
FRAMEWORK_SPECIFIC = {
    "quantize_static": "post-training static int8 through pt2e; the TF side gets it from TFLite (to_tflite 'int8')",
    "quantize_dynamic": "torch.ao's dynamic int8 of dense layers; the TF side's is TFLite 'dynamic' (to_tflite)",
    "save_int8": "writes the pt2e model's int8 tensors; on the TF side the TFLite file is the int8 artifact",
    "CALIBRATION_BATCH": "pt2e calibrates in batches; TFLite's converter takes one image at a time",
    "lower_for_cpu": "a pt2e graph needs torchao's lowering to reach int8 kernels; TFLite's converter emits them",
}


def _loss_fn(spec):
    import importlib

    return importlib.import_module(f"{__package__}.{spec.task}").compute_loss
