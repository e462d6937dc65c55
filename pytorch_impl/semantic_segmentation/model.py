"""Semantic segmenters (PyTorch twin): FCN, U-Net and DeepLab-style decoders on the classification twin's ResNet.

The backbone's stages give maps at strides 1, 2, 4, ...; each decoder turns the deepest (and, with skips, the
shallower ones) into per-pixel class logits at full size. Attribute names are the canonical weight keys
(``backbone.layer1.0.conv1``, ``score.0``, ``up.1``, ``aspp.convs.2.0``); the Keras twin in
``tensorflow_impl/semantic_segmentation/model.py`` reads line for line alike.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shared.kernels import bilinear_kernel
from shared.specs.semantic_segmentation import SegmentationSpec

from ..classification.model import ResNet
from ..layers import BatchNorm2d, Conv2d, ConvTranspose2d, ModuleList, ReLU, Sequential, resize_bilinear
from ..tensors import batched_outputs, check_native


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int, spec: SegmentationSpec,
                 dilation: int = 1) -> Sequential:
    """Conv (no bias; 'same' size, dilated by ``dilation``) + BatchNorm + ReLU, children named 0, 1, 2."""
    eps, mom = spec.model.backbone.bn_eps, spec.model.backbone.bn_momentum
    pad = dilation * (kernel_size - 1) // 2
    return Sequential(Conv2d(in_channels, out_channels, kernel_size, 1, pad, dilation=dilation, bias=False),
                      BatchNorm2d(out_channels, eps, mom), ReLU())


def upsampler(channels: int, factor: int) -> ConvTranspose2d:
    """A learned x``factor`` upsampling (kernel 2 * factor, stride factor, padding factor / 2: exactly
    ``factor`` times the size), initialised to bilinear interpolation, FCN's choice."""
    layer = ConvTranspose2d(channels, channels, 2 * factor, factor, factor // 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(bilinear_kernel(channels, 2 * factor)))
    return layer


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLab v3): a 1x1 branch, a dilated 3x3 branch per rate and an
    image-pooling branch, concatenated and projected to ``width`` channels.

    The pooling branch has no BatchNorm (torchvision's has one, which fails on a batch of one image in
    training): global average, 1x1 conv with bias, ReLU, broadcast back over the map.
    """

    def __init__(self, in_channels: int, width: int, rates: tuple[int, ...], spec: SegmentationSpec):
        super().__init__()
        self.convs = ModuleList([conv_bn_relu(in_channels, width, 1, spec)]
                                + [conv_bn_relu(in_channels, width, 3, spec, rate) for rate in rates])
        self.pool = Conv2d(in_channels, width, 1, 1, 0)
        self.project = conv_bn_relu(width * (len(rates) + 2), width, 1, spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [conv(x) for conv in self.convs]
        pooled = F.relu(self.pool(torch.mean(x, dim=(2, 3), keepdim=True)))
        branches.append(pooled.expand(-1, -1, x.shape[2], x.shape[3]))
        return self.project(torch.cat(branches, dim=1))


class Segmenter(nn.Module):
    """Backbone and the decoder ``spec.model.arch`` names (shared/specs/semantic_segmentation.py).

    Input: images [N, C, H, W] float32 at the spec's size; ``forward`` returns ``{"logits": [N, K, H, W]}``.
    """

    def __init__(self, spec: SegmentationSpec):
        super().__init__()
        self.spec = spec
        m = spec.model
        k, channels = m.num_classes, m.stage_channels
        self.backbone = ResNet(m.backbone)
        del self.backbone.fc  # never called: its parameters would get no gradient
        deepest = len(channels) - 1
        self.skip_stages = [deepest - j for j in range(1, m.skips + 1)]   # shallower stages the decoder adds
        self.final_factor = 2 ** (deepest - m.skips)                       # what is left to full size after them
        if m.arch == "fcn":
            self.score = ModuleList([Conv2d(channels[i], k, 1, 1, 0) for i in [deepest, *self.skip_stages]])
            self.up = ModuleList([upsampler(k, 2) for _ in self.skip_stages])
            width = k
        elif m.arch == "unet":
            # U-Net's symmetry: the decoder level of stage i has stage i's channels, halving as the size doubles.
            inputs = [channels[i] for i in [deepest, *self.skip_stages]]
            self.up = ModuleList([ConvTranspose2d(inputs[j], channels[i], 2, 2, 0)
                                  for j, i in enumerate(self.skip_stages)])
            self.decode = ModuleList([Sequential(conv_bn_relu(2 * channels[i], channels[i], 3, spec),
                                                 conv_bn_relu(channels[i], channels[i], 3, spec))
                                      for i in self.skip_stages])
            self.classifier = Conv2d(inputs[-1], k, 1, 1, 0)
            width = k
        else:
            self.aspp = ASPP(channels[deepest], m.decoder_width, m.atrous_rates, spec)
            self.classifier = Conv2d(m.decoder_width, k, 1, 1, 0)
            width = None  # resized bilinearly, no learned upsampling
        self.final_up = upsampler(width, self.final_factor) if width and self.final_factor > 1 else None

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every backbone stage's map, [N, C_i, H_i, W_i], shallow to deep."""
        h, w, c = self.spec.input_shape
        check_native(x, c, (h, w))
        return self.backbone.forward_features(x)

    def forward_head(self, features: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Stage maps -> ``{"logits": [N, K, H, W]}`` at the input's size."""
        arch, y = self.spec.model.arch, features[-1]
        if arch == "fcn":
            y = self.score[0](y)
            for j, i in enumerate(self.skip_stages):
                y = self.up[j](y) + self.score[j + 1](features[i])
        elif arch == "unet":
            for j, i in enumerate(self.skip_stages):
                y = self.decode[j](torch.cat([F.relu(self.up[j](y)), features[i]], dim=1))
            y = self.classifier(y)
        else:
            y = resize_bilinear(self.classifier(self.aspp(y)), self.spec.input_shape[:2])
        if self.final_up is not None:
            y = self.final_up(y)
        return {"logits": y}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_head(self.forward_features(x))


def build_model(spec: SegmentationSpec) -> Segmenter:
    return Segmenter(spec)


def predict(model: Segmenter, images: np.ndarray, *, with_features: bool = False, batch_size: int = 64,
            device: str | torch.device = "cpu") -> dict[str, np.ndarray]:
    """Eval-mode outputs for NHWC numpy images: ``logits`` [N, H, W, K]; with ``with_features``, every backbone
    stage's map as ``features.<i>``: [N, H_i, W_i, C_i]."""
    return batched_outputs(model, images, with_features=with_features, batch_size=batch_size, device=device)