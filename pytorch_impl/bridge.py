"""PyTorch side of the weight bridge: a model's ``state_dict`` is the canonical layout already.

The twin, ``tensorflow_impl/bridge.py``, maps Keras variables to the same keys.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from shared import weights as W


def variable_map(model: nn.Module) -> list[tuple[str, torch.Tensor, str]]:
    """(canonical key, parameter or buffer, tensor kind) for every weight of ``model``, in module order.

    The kind names the transpose rule its Keras twin needs (shared/weights.py, TO_KERAS).
    """
    out = []
    for prefix, module in model.named_modules():
        for name, tensor in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
            key = f"{prefix}.{name}" if prefix else name
            if W.is_canonical_key(key):
                out.append((key, tensor, _kind(module) if name.startswith("weight") and tensor.ndim > 1 else "vector"))
    return out


def _kind(module: nn.Module) -> str:
    if isinstance(module, nn.ConvTranspose2d):
        return "conv_transpose"
    if isinstance(module, nn.Conv2d):
        return "depthwise" if module.groups > 1 and module.groups == module.in_channels == module.out_channels \
            else "conv"
    return "dense"


def expected_layout(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if W.is_canonical_key(k)}


def export_weights(model: nn.Module) -> dict[str, np.ndarray]:
    """Canonical tensors of ``model``: its state_dict as numpy, less torch-only buffers."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items() if W.is_canonical_key(k)}


def import_weights(model: nn.Module, tensors: dict[str, np.ndarray], *, source: str = "weights") -> nn.Module:
    """Load canonical tensors into ``model``; a missing, extra or mis-shaped key raises WeightError."""
    W.check_layout(expected_layout(model), tensors, source=source)
    state = model.state_dict()
    new_state = {k: torch.as_tensor(np.asarray(v), dtype=state[k].dtype) for k, v in tensors.items()}
    # num_batches_tracked and the like keep their current value: they have no canonical counterpart.
    model.load_state_dict({**state, **new_state}, strict=True)
    return model


def gradients(model: nn.Module) -> dict[str, np.ndarray]:
    """The ``.grad`` of every parameter after a backward pass, keyed canonically."""
    return {k: p.grad.detach().cpu().numpy().copy() for k, p in model.named_parameters() if p.grad is not None}


def save_weights(model: nn.Module, path: str | os.PathLike, metadata: dict | None = None):
    return W.save_file(export_weights(model), path, {"framework": "torch", **(metadata or {})})


def load_weights(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    return import_weights(model, W.load_file(path), source=f"weight file {str(path)!r}")
