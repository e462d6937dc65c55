"""Building blocks shared by every PyTorch twin.

Each name here has a twin in ``tensorflow_impl/layers.py`` that takes the same
arguments (PyTorch's conventions: explicit padding, NCHW, BatchNorm momentum as
the weight of the new statistic) and computes the same numbers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# In the order of the TensorFlow twin's definitions (tests/test_structure.py compares them).
ReLU = nn.ReLU
Conv2d = nn.Conv2d
# Output size (H - 1) * stride - 2 * padding + kernel_size + output_padding: torch's definition, which the Keras
# twin reproduces by cropping a 'valid' transposed conv (its own 'same' padding puts the odd pixel elsewhere).
ConvTranspose2d = nn.ConvTranspose2d
Linear = nn.Linear


class BatchNorm2d(nn.BatchNorm2d):
    """nn.BatchNorm2d with eps and momentum always given (they are spec fields, not defaults)."""

    def __init__(self, num_features: int, eps: float, momentum: float):
        super().__init__(num_features, eps=eps, momentum=momentum)


Sequential = nn.Sequential
ModuleList = nn.ModuleList


class Pool2d(nn.Module):
    """Local pooling of one of three kinds, PyTorch semantics.

    max: padding counts as -inf; avg: padding counts as zeros in the mean
    (``count_include_pad``); l2: torch's LPPool2d with p=2, i.e. the square
    root of the sum of squares over the window, on a zero-padded input.
    """

    def __init__(self, kind: str, kernel_size: int, stride: int, padding: int = 0):
        super().__init__()
        self.kind, self.kernel_size, self.stride, self.padding = kind, kernel_size, stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, C, H, W] -> [N, C, H', W']
        k, s, p = self.kernel_size, self.stride, self.padding
        if self.kind == "max":
            return F.max_pool2d(x, k, s, p)
        if self.kind == "avg":
            return F.avg_pool2d(x, k, s, p)
        return F.lp_pool2d(F.pad(x, (p, p, p, p)), 2.0, k, s)


def resize_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[N, C, H, W] -> [N, C, *size], bilinear with half-pixel centres (``align_corners=False``) and no
    antialiasing: the sampling ``tf.image.resize`` does by default, so the twins resize alike both ways."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=False)


class GlobalPool(nn.Module):
    """Global spatial pooling to one vector per image: max, avg, or l2.

    l2 is the power-average with p=2, sqrt(mean(x^2)); the tiny epsilon keeps its
    gradient finite for an all-zero channel (a dead ReLU channel is common).
    """

    eps = 1e-12

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, C, H, W] -> [N, C]
        if self.kind == "max":
            return torch.amax(x, dim=(2, 3))
        if self.kind == "avg":
            return torch.mean(x, dim=(2, 3))
        return torch.sqrt(torch.mean(x * x, dim=(2, 3)) + self.eps)
