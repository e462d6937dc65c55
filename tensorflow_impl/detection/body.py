"""The body every detector here shares (TensorFlow / Keras 3 twin): the classification twin's ResNet as the backbone,
SSD's extra layers continuing it to coarser strides, optional 1x1 necks, and the feature map of every anchor
level. The SSD-, YOLO- and Faster R-CNN-style detectors build on it with the same canonical weight names.
"""

from __future__ import annotations

import keras

from shared.specs.detection import DetectionSpec

from ..classification.model import HE_FAN_OUT, ResNet
from ..layers import BatchNorm2d, Conv2d, ModuleList, ReLU, Sequential
from ..tensors import check_native


def build_body(model: keras.Layer, spec: DetectionSpec) -> list[int]:
    """Give ``model`` the part every detector here shares, as attributes with the canonical names:
    ``backbone`` (the classification twin's ResNet; its classifier is never called, so never built:
    no variables, as the PyTorch twin, which deletes it), ``extras`` (3x3/2 conv + BN + ReLU, continuing
    it to coarser strides), ``levels`` (which maps carry anchors) and ``necks`` (optional 1x1 conv + BN
    + ReLU to ``head_width``). Returns the channel count of each level's map.
    """
    m = spec.model
    eps, mom = m.backbone.bn_eps, m.backbone.bn_momentum
    model.backbone = ResNet(m.backbone, name="backbone")
    # It runs through forward_features, never through __call__, so Keras would not mark it built (and
    # would warn about "unbuilt state"); its layers build themselves when first called, as always.
    model.backbone.built = True
    channels, extras = m.backbone.feature_dim, []
    for i, width in enumerate(m.extra_widths):
        extras.append(Sequential(Conv2d(channels, width, 3, 2, 1, bias=False, kernel_initializer=HE_FAN_OUT, name="0"),
                                 BatchNorm2d(width, eps, mom, name="1"), ReLU(name="2"), name=str(i)))
        channels = width
    model.extras = ModuleList(extras, name="extras")
    model.levels = spec.feature_levels
    in_channels = [m.feature_channels[i] for i in model.levels]
    model.necks = None
    if m.head_width:
        model.necks = ModuleList([Sequential(Conv2d(c, m.head_width, 1, 1, 0, bias=False, kernel_initializer=HE_FAN_OUT,
                                                    name="0"),
                                             BatchNorm2d(m.head_width, eps, mom, name="1"), ReLU(name="2"),
                                             name=str(i)) for i, c in enumerate(in_channels)], name="necks")
        in_channels = [m.head_width] * len(in_channels)
    return in_channels


def body_features(model: keras.Layer, x, training=False) -> list:
    """The feature map of every anchor level, [N, H_l, W_l, C_l], fine to coarse (after the necks)."""
    h, w, c = model.spec.input_shape
    check_native(x, c, (h, w))
    features = model.backbone.forward_features(x, training=training)
    y = features[-1]
    for extra in model.extras:
        y = extra(y, training=training)
        features.append(y)
    maps = [features[i] for i in model.levels]
    if model.necks is not None:
        maps = [neck(f, training=training) for neck, f in zip(model.necks, maps)]
    return maps
