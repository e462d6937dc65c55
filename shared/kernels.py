"""Fixed convolution kernels both twins initialise layers with, in the canonical (PyTorch) layout."""

from __future__ import annotations

import numpy as np


def bilinear_kernel(channels: int, size: int) -> np.ndarray:
    """A transposed convolution's weight [channels, channels, size, size] that upsamples each channel on its own
    by bilinear interpolation (stride ``size // 2``, padding ``size // 4``): FCN's initialisation of its learned
    upsampling, so training starts from plain interpolation and learns what improves on it."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    taps = 1 - np.abs(np.arange(size) - center) / factor
    weight = np.zeros((channels, channels, size, size), dtype=np.float32)
    weight[np.arange(channels), np.arange(channels)] = np.outer(taps, taps)
    return weight


__all__ = ["bilinear_kernel"]
