"""The one boundary where NHWC numpy data becomes PyTorch tensors (NCHW) and back."""

from __future__ import annotations

import numpy as np
import torch

from shared.data.validate import InputError, check_images


def resolve_device(name: str = "cpu") -> torch.device:
    """``cpu``, ``cuda`` (error if absent) or ``auto`` (cuda when present)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ValueError(f"unknown device {name!r}; expected one of ['cpu', 'cuda', 'auto']")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but torch sees no CUDA GPU")
    return torch.device(name)


def to_native(images: np.ndarray, *, channels: int | None = None, size: tuple[int, int] | None = None,
              device: str | torch.device = "cpu") -> torch.Tensor:
    """[N, H, W, C] float32 numpy -> [N, C, H, W] torch tensor, after validating it (``check_images``)."""
    images = check_images(images, channels=channels, size=size)
    device = resolve_device(device) if isinstance(device, str) else device
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(device)


def check_native(x: torch.Tensor, channels: int, size: tuple[int, int] | None = None) -> None:
    """A batch handed to a model directly (no ``predict``) must be NCHW with ``channels`` channels (and
    spatial ``size`` when the model has one): a clear error instead of a convolution's shape mismatch."""
    expected = (channels, *size) if size else (channels,)
    if x.ndim != 4 or tuple(x.shape[1:1 + len(expected)]) != expected:
        h, w = size or ("H", "W")
        raise InputError(f"images: expected a native batch of shape [N, {channels}, {h}, {w}] (NCHW); received "
                         f"shape {list(x.shape)}")


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A model output back to numpy; feature maps [N, C, H, W] become [N, H, W, C]."""
    array = tensor.detach().cpu().numpy()
    return np.ascontiguousarray(array.transpose(0, 2, 3, 1)) if array.ndim == 4 else array


def targets_to_native(targets, device: str | torch.device = "cpu"):
    """Task targets (numpy arrays, or dicts / lists of them) -> torch tensors, structure kept."""
    if isinstance(targets, dict):
        return {k: targets_to_native(v, device) for k, v in targets.items()}
    if isinstance(targets, (list, tuple)):
        return type(targets)(targets_to_native(v, device) for v in targets)
    return torch.from_numpy(np.ascontiguousarray(targets)).to(device)


def batched_outputs(model, images: np.ndarray, *, with_features: bool = False, batch_size: int = 64,
                    device: str | torch.device = "cpu") -> dict[str, np.ndarray]:
    """Eval-mode outputs of a model with ``forward_features`` (its maps, shallow to deep) and ``forward_head``
    (maps -> a dict of outputs) for NHWC numpy images at ``model.spec.input_shape``, as NHWC numpy, in batches;
    with ``with_features``, every map too, as ``features.<i>``. The ``predict`` of the detectors and segmenters."""
    h, w, c = model.spec.input_shape
    x_all = to_native(images, channels=c, size=(h, w), device=device)
    model.eval()
    chunks: dict[str, list[np.ndarray]] = {}
    with torch.inference_mode():
        for start in range(0, x_all.shape[0], batch_size):
            features = model.forward_features(x_all[start:start + batch_size])
            out = model.forward_head(features)
            if with_features:
                out.update({f"features.{i}": f for i, f in enumerate(features)})
            for key, value in out.items():
                chunks.setdefault(key, []).append(to_numpy(value))
    return {key: np.concatenate(parts) for key, parts in chunks.items()}
