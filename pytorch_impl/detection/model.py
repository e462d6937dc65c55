"""SSD-style single-shot detector (PyTorch twin).

The backbone is the classification twin's ResNet (``forward_features`` gives
every stage's map); SSD's extra layers continue it to coarser strides; per
anchor level, one 3x3 conv predicts the class logits of each of the cell's
anchors and one the box deltas (torchvision's SSDHead). Attribute paths are
the canonical weight keys (``backbone.layer1.0.conv1.weight``,
``extras.0.0.weight``, ``cls_head.2.bias``); the Keras twin in
``tensorflow_impl/detection/model.py`` reads line for line alike.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from shared.data.validate import InputError, check_images
from shared.specs.detection import DetectionSpec

from ..classification.model import ResNet
from ..layers import BatchNorm2d, Conv2d, ModuleList, ReLU, Sequential
from ..tensors import to_native, to_numpy


class SSD(nn.Module):
    """Backbone, extra layers, per-level class and box heads.

    Input: images [N, 3, H, W] float32 (H = W = ``spec.data.image_size``).
    ``forward`` returns ``{"cls_logits": [N, A, num_classes + 1], "box_regression": [N, A, 4]}``
    with A the anchors of every level in shared.anchors' order (level, row,
    column, anchor of the cell) and logit 0 the background.
    """

    def __init__(self, spec: DetectionSpec):
        super().__init__()
        self.spec = spec
        m = spec.model
        in_channels = build_body(self, spec)
        self.num_outputs = m.num_classes + 1
        per_cell = spec.anchors.num_anchors_per_location
        self.cls_head = ModuleList([Conv2d(c, a * self.num_outputs, 3, 1, 1) for c, a in zip(in_channels, per_cell)])
        self.box_head = ModuleList([Conv2d(c, a * 4, 3, 1, 1) for c, a in zip(in_channels, per_cell)])
        self._init_weights()

    def _init_weights(self) -> None:
        # Extra layers and necks as the backbone (He normal, fan_out); heads as torchvision's SSD
        # (Xavier uniform, zero bias). The Keras twin passes the same initialisers.
        init_body(self)
        for m in [*self.cls_head, *self.box_head]:
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The feature map of every anchor level, [N, C_l, H_l, W_l], fine to coarse."""
        return body_features(self, x)

    def forward_head(self, features: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-level maps -> the head outputs concatenated over levels (see the class docstring)."""
        cls_logits, box_regression = [], []
        for f, cls_conv, box_conv in zip(features, self.cls_head, self.box_head):
            n = f.shape[0]
            # [N, A_l * K, H, W] -> [N, H, W, A_l * K] -> [N, H * W * A_l, K]: rows in (y, x, anchor) order,
            # shared.anchors' order. Not a layout boundary: the head's output is a list of anchors.
            cls_logits.append(cls_conv(f).permute(0, 2, 3, 1).reshape(n, -1, self.num_outputs))
            box_regression.append(box_conv(f).permute(0, 2, 3, 1).reshape(n, -1, 4))
        return {"cls_logits": torch.cat(cls_logits, dim=1), "box_regression": torch.cat(box_regression, dim=1)}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_head(self.forward_features(x))


def _check_input(x: torch.Tensor, spec: DetectionSpec) -> None:
    h, w, c = spec.input_shape
    if x.ndim != 4 or tuple(x.shape[1:]) != (c, h, w):
        raise InputError(f"images: expected a native batch of shape [N, {c}, {h}, {w}] (NCHW); received shape "
                         f"{list(x.shape)}")


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
    _check_input(x, model.spec)
    features = model.backbone.forward_features(x)
    y = features[-1]
    for extra in model.extras:
        y = extra(y)
        features.append(y)
    maps = [features[i] for i in model.levels]
    if model.necks is not None:
        maps = [neck(f) for neck, f in zip(model.necks, maps)]
    return maps


def build_model(spec: DetectionSpec) -> SSD:
    """The detector ``spec.model.detector`` names (only ``ssd`` so far)."""
    if spec.model.detector == "faster_rcnn":
        from .faster_rcnn import FasterRCNN
        return FasterRCNN(spec)
    builders = {"ssd": SSD}
    if spec.model.detector == "yolo":
        from .yolo import YOLO  # the grid detector lives in its own module (yolo.py)
        builders["yolo"] = YOLO
    return builders[spec.model.detector](spec)


def export_view(model, spec: DetectionSpec):
    """The part of ``model`` an exported graph holds, and its output keys: the whole network, except for
    the Faster R-CNN-style detector, whose graph stops at the RPN (``spec.export_limit`` says why)."""
    if spec.model.detector == "faster_rcnn":
        from .faster_rcnn import RPNExport
        return RPNExport(model), RPNExport.output_keys
    return model, tuple(spec.output_keys)


def predict(model: SSD, images: np.ndarray, *, with_features: bool = False, batch_size: int = 64,
            device: str | torch.device = "cpu") -> dict[str, np.ndarray]:
    """Eval-mode head outputs for NHWC numpy images: ``cls_logits`` [N, A, K + 1], ``box_regression`` [N, A, 4].

    With ``with_features``, every anchor level's map too, as ``features.<l>``: [N, H_l, W_l, C_l].
    """
    h, w, c = model.spec.input_shape
    x_all = to_native(check_images(images, channels=c, size=(h, w)), device=device)
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


# Names one framework alone has, with the reason (the structure test reads this).
FRAMEWORK_SPECIFIC = {
    "init_body": "torch initialises modules after building them, in an order its RNG fixes; Keras takes each "
                 "initialiser when the layer is made (build_body passes HE_FAN_OUT)",
}
