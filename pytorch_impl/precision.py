"""Mixed precision in the PyTorch twin: torch.autocast around the forward pass.

Twin of ``tensorflow_impl/precision.py``. Under autocast the weights stay float32; convolutions and linear
layers run in bfloat16 or float16, while the ops on autocast's float32 list (softmax, cross-entropy,
BatchNorm's statistics) stay in float32. float16 gradients go through a static loss scale
(``shared.precision.LOSS_SCALE``), as torch's GradScaler would apply a dynamic one.
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch

from shared.precision import LOSS_SCALE, check_precision

from . import bridge
from .tensors import resolve_device, to_native

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def autocast(precision: str, device: str = "cpu"):
    """The autocast context of ``precision`` on ``device``; float32: none."""
    if check_precision(precision) == "float32":
        return nullcontext()
    return torch.autocast(device_type=resolve_device(device).type, dtype=DTYPES[precision])


def build_model(task, spec, precision: str) -> torch.nn.Module:
    """``task.build_model(spec)``: a torch model takes its precision from the autocast it is called under."""
    check_precision(precision)
    return task.build_model(spec)


def forward(model: torch.nn.Module, images: np.ndarray, spec, precision: str, device: str = "cpu"
            ) -> dict[str, np.ndarray]:
    """The model's outputs on NHWC ``images`` in evaluation mode at ``precision``, as float32 numpy."""
    dev = resolve_device(device)
    model = model.to(dev).eval()
    x = to_native(images, channels=spec.input_shape[-1], device=dev)
    with torch.no_grad(), autocast(precision, device):
        out = model(x)
    return {k: v.float().cpu().numpy() for k, v in out.items()}


def loss_and_gradients(model: torch.nn.Module, spec, loss_fn, images: np.ndarray, targets, precision: str,
                       device: str = "cpu") -> tuple[float, dict[str, np.ndarray]]:
    """The training loss on one batch (training mode) and every parameter's gradient, canonical keys, at
    ``precision``; no update."""
    dev = resolve_device(device)
    model = model.to(dev).train()
    x = to_native(images, channels=spec.input_shape[-1], device=dev)
    y = torch.as_tensor(targets, device=dev)
    with autocast(precision, device):
        loss = loss_fn(model(x), y, spec)["loss"]
    model.zero_grad(set_to_none=True)
    (loss.float() * LOSS_SCALE[precision]).backward()
    return float(loss.detach()), {k: g / LOSS_SCALE[precision] for k, g in bridge.gradients(model).items()}


# Names only this twin has, with the reason (the structure test reads this).
FRAMEWORK_SPECIFIC = {
    "DTYPES": "torch names the low formats by dtype; Keras by policy name (tensorflow_impl.precision.POLICIES)",
    "autocast": "torch picks the precision when the model is called (autocast); Keras when it is built (a policy)",
}

__all__ = ["DTYPES", "autocast", "build_model", "forward", "loss_and_gradients"]
