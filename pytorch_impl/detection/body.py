"""The body every detector here shares (PyTorch twin): the classification twin's ResNet as the backbone,
SSD's extra layers continuing it to coarser strides, optional 1x1 necks, and the feature map of every anchor
level. The SSD-, YOLO- and Faster R-CNN-style detectors build on it with the same canonical weight names.
"""

from __future__ import annotations

import torch
from torch import nn

from shared.specs.detection import DetectionSpec

from ..classification.model import ResNet
from ..layers import BatchNorm2d, Conv2d, ModuleList, ReLU, Sequential
from ..tensors import check_native


def build_body(model: nn.Module, spec: DetectionSpec) -> list[int]:
    """Give ``model`` the part every detector here shares, as attributes with the canonical names:
    ``backbone`` (the classification twin's ResNet, classifier removed), ``extras`` (3x3/2 conv + BN +
    ReLU, continuing it to coarser strides), ``levels`` (which maps carry anchors) and ``necks``
    (optional 1x1 conv + BN + ReLU to ``head_width``). Returns the channel count of each level's map.
    Weights are initialised by ``init_body``, which each detector calls where torch's RNG order wants it.
    """
    m = spec.model
    eps, mom = m.backbone.bn_eps, m.backbone.bn_momentum
    model.backbone = ResNet(m.backbone)
    del model.backbone.fc  # a detector never calls the classifier: its parameters would get no gradient
    channels, extras = m.backbone.feature_dim, []
    for width in m.extra_widths:
        extras.append(Sequential(Conv2d(channels, width, 3, 2, 1, bias=False), BatchNorm2d(width, eps, mom), ReLU()))
        channels = width
    model.extras = ModuleList(extras)
    model.levels = spec.feature_levels
    in_channels = [m.feature_channels[i] for i in model.levels]
    model.necks = None
    if m.head_width:
        model.necks = ModuleList([Sequential(Conv2d(c, m.head_width, 1, 1, 0, bias=False),
                                             BatchNorm2d(m.head_width, eps, mom), ReLU()) for c in in_channels])
        in_channels = [m.head_width] * len(in_channels)
    return in_channels

def init_body(model: nn.Module) -> None:
    """Extra layers and necks initialised as the backbone's convs (He normal, fan_out)."""
    for m in [*model.extras.modules(), *(model.necks.modules() if model.necks is not None else ())]:
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


def body_features(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The feature map of every anchor level, [N, C_l, H_l, W_l], fine to coarse (after the necks)."""
    h, w, c = model.spec.input_shape
    check_native(x, c, (h, w))
    features = model.backbone.forward_features(x)
    y = features[-1]
    for extra in model.extras:
        y = extra(y)
        features.append(y)
    maps = [features[i] for i in model.levels]
    if model.necks is not None:
        maps = [neck(f) for neck, f in zip(model.necks, maps)]
    return maps


# Names one framework alone has, with the reason (the structure test reads this).
FRAMEWORK_SPECIFIC = {
    "init_body": "torch initialises modules after building them, in an order its RNG fixes; Keras takes each "
                 "initialiser when the layer is made (build_body passes HE_FAN_OUT)",
}
