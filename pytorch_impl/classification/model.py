"""ResNet-style classifier and feature extractor (PyTorch twin).

Attribute names are torchvision's (``conv1``, ``bn1``, ``layer1.0.conv2``,
``layer2.0.downsample.0``, ``fc``), so ``torchvision.models.resnet18()``'s
``state_dict`` is this model's canonical weight layout. The Keras twin in
``tensorflow_impl/classification/model.py`` reads line for line alike.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shared.specs.classification import ClassificationSpec, ResNetSpec

from ..layers import BatchNorm2d, Conv2d, GlobalPool, Linear, Pool2d, ReLU, Sequential
from ..tensors import check_native, to_native, to_numpy


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity (or 1x1 projection) shortcut.

    ReLU is applied functionally: one ReLU module called at several places
    (torchvision's style) makes the pt2e int8 quantizer fail to partition the graph.
    """

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int, spec: ResNetSpec):
        super().__init__()
        eps, mom = spec.bn_eps, spec.bn_momentum
        self.conv1 = Conv2d(in_channels, width, 3, stride, 1, bias=False)
        self.bn1 = BatchNorm2d(width, eps, mom)
        self.conv2 = Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = BatchNorm2d(width, eps, mom)
        self.downsample = _shortcut(in_channels, width * self.expansion, stride, spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride, torchvision's v1.5), 1x1 expand by 4."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int, spec: ResNetSpec):
        super().__init__()
        eps, mom = spec.bn_eps, spec.bn_momentum
        self.conv1 = Conv2d(in_channels, width, 1, 1, 0, bias=False)
        self.bn1 = BatchNorm2d(width, eps, mom)
        self.conv2 = Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = BatchNorm2d(width, eps, mom)
        self.conv3 = Conv2d(width, width * self.expansion, 1, 1, 0, bias=False)
        self.bn3 = BatchNorm2d(width * self.expansion, eps, mom)
        self.downsample = _shortcut(in_channels, width * self.expansion, stride, spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + identity)


def _shortcut(in_channels: int, out_channels: int, stride: int, spec: ResNetSpec) -> nn.Module | None:
    if stride == 1 and in_channels == out_channels:
        return None
    return Sequential(Conv2d(in_channels, out_channels, 1, stride, 0, bias=False),
                      BatchNorm2d(out_channels, spec.bn_eps, spec.bn_momentum))


class ResNet(nn.Module):
    """Stem, ``len(depths)`` stages named ``layer1``..., global pool, ``fc``.

    Input: images [N, C, H, W] float32. ``forward`` returns ``{"logits": [N, classes]}``. ``input_size``
    (H, W): the size the model serves, checked by ``forward`` and ``predict`` (global pooling would take any
    size); None for a backbone inside a larger model, which checks its own input.
    """

    def __init__(self, spec: ResNetSpec, input_size: tuple[int, int] | None = None):
        super().__init__()
        self.spec, self.input_size = spec, None if input_size is None else tuple(input_size)
        block = Bottleneck if spec.block == "bottleneck" else BasicBlock
        eps, mom = spec.bn_eps, spec.bn_momentum
        if spec.stem == "imagenet":
            self.conv1 = Conv2d(spec.in_channels, spec.stem_width, 7, 2, 3, bias=False)
            self.stem_pool = Pool2d(spec.stem_pool, 3, 2, 1)
        else:
            self.conv1 = Conv2d(spec.in_channels, spec.stem_width, 3, 1, 1, bias=False)
            self.stem_pool = None
        self.bn1 = BatchNorm2d(spec.stem_width, eps, mom)
        self.relu = ReLU()
        channels = spec.stem_width
        self.stage_names = []
        for i, (depth, width) in enumerate(zip(spec.depths, spec.widths)):
            stride = 1 if i == 0 else 2
            blocks = []
            for _ in range(depth):
                blocks.append(block(channels, width, stride, spec))
                channels, stride = width * block.expansion, 1
            self.stage_names.append(f"layer{i + 1}")
            setattr(self, f"layer{i + 1}", Sequential(*blocks))
        self.head_pool = GlobalPool(spec.head_pool)
        self.fc = Linear(channels, spec.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's ResNet initialisation (He normal, fan_out); the Keras twin passes the same initialiser.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every stage's feature map, [N, C_i, H_i, W_i], shallow to deep."""
        x = self.relu(self.bn1(self.conv1(x)))
        if self.stem_pool is not None:
            x = self.stem_pool(x)
        features = []
        for name in self.stage_names:
            x = getattr(self, name)(x)
            features.append(x)
        return features

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """[N, C, H, W] last feature map -> [N, C] pooled features or [N, classes] logits."""
        x = self.head_pool(x)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        check_native(x, self.spec.in_channels, self.input_size)
        return {"logits": self.forward_head(self.forward_features(x)[-1])}


def build_model(spec: ClassificationSpec) -> ResNet:
    return ResNet(spec.model, spec.input_shape[:2])


def predict(model: ResNet, images: np.ndarray, *, with_features: bool = False, batch_size: int = 256,
            device: str | torch.device = "cpu") -> dict[str, np.ndarray]:
    """Eval-mode outputs for NHWC numpy images, as NHWC numpy.

    Returns ``{"logits": [N, classes]}`` and, with ``with_features``, every
    stage's map as ``features.<i>``: [N, H_i, W_i, C_i].
    """
    x_all = to_native(images, channels=model.spec.in_channels, size=model.input_size, device=device)
    model.eval()
    chunks: dict[str, list[np.ndarray]] = {}
    with torch.inference_mode():
        for start in range(0, x_all.shape[0], batch_size):
            x = x_all[start:start + batch_size]
            features = model.forward_features(x)
            out = {"logits": model.forward_head(features[-1])}
            if with_features:
                out.update({f"features.{i}": f for i, f in enumerate(features)})
            for key, value in out.items():
                chunks.setdefault(key, []).append(to_numpy(value))
    return {key: np.concatenate(parts) for key, parts in chunks.items()}
