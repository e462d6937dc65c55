"""SSD-style single-shot detector (TensorFlow / Keras 3 twin).

The backbone is the classification twin's ResNet (``forward_features`` gives
every stage's map); SSD's extra layers continue it to coarser strides; per
anchor level, one 3x3 conv predicts the class logits of each of the cell's
anchors and one the box deltas (torchvision's SSDHead). Layer ``name=``
strings are the PyTorch attribute paths, so every weight maps to its
canonical key (``backbone.layer1.0.conv1.weight``, ``extras.0.0.weight``,
``cls_head.2.bias``). Reads line for line like
``pytorch_impl/detection/model.py``.
"""

from __future__ import annotations

import dataclasses
import weakref

import keras
import numpy as np
import tensorflow as tf

from shared.data.validate import InputError, check_images
from shared.specs.detection import DetectionSpec, spec_from_dict

from ..classification.model import HE_FAN_OUT, ResNet
from ..layers import BatchNorm2d, Conv2d, ModuleList, ReLU, Sequential
from ..tensors import resolve_device, to_native, to_numpy


@keras.saving.register_keras_serializable("twinvision")
class SSD(keras.Model):
    """Backbone, extra layers, per-level class and box heads.

    Input: images [N, H, W, 3] float32 (H = W = ``spec.data.image_size``).
    ``call`` returns ``{"cls_logits": [N, A, num_classes + 1], "box_regression": [N, A, 4]}``
    with A the anchors of every level in shared.anchors' order (level, row,
    column, anchor of the cell) and logit 0 the background.
    """

    def __init__(self, spec: DetectionSpec, **kwargs):
        super().__init__(**kwargs)
        # The multibox loss has data-dependent shapes (matching, boolean masks) that XLA cannot
        # compile; this keeps Keras' jit_compile="auto" off on GPU machines too.
        self.supports_jit = False
        self.spec = spec
        m = spec.model
        in_channels = build_body(self, spec)
        self.num_outputs = m.num_classes + 1
        per_cell = spec.anchors.num_anchors_per_location
        # torchvision's SSD head initialisation: Xavier uniform, zero bias.
        head = {"kernel_initializer": "glorot_uniform", "bias_initializer": "zeros"}
        self.cls_head = ModuleList([Conv2d(c, a * self.num_outputs, 3, 1, 1, name=str(i), **head)
                                    for i, (c, a) in enumerate(zip(in_channels, per_cell))], name="cls_head")
        self.box_head = ModuleList([Conv2d(c, a * 4, 3, 1, 1, name=str(i), **head)
                                    for i, (c, a) in enumerate(zip(in_channels, per_cell))], name="box_head")

    def forward_features(self, x, training=False) -> list:
        """The feature map of every anchor level, [N, H_l, W_l, C_l], fine to coarse."""
        return body_features(self, x, training)

    def forward_head(self, features: list) -> dict:
        """Per-level maps -> the head outputs concatenated over levels (see the class docstring)."""
        cls_logits, box_regression = [], []
        for f, cls_conv, box_conv in zip(features, self.cls_head, self.box_head):
            # [N, H, W, A_l * K] -> [N, H * W * A_l, K]: rows in (y, x, anchor) order, shared.anchors' order.
            # H and W are static (the input size is fixed), so the anchor count stays known when traced.
            _, h, w, _ = f.shape
            rows = h * w * self.spec.anchors.num_anchors_per_location[len(cls_logits)]
            cls_logits.append(tf.reshape(cls_conv(f), [-1, rows, self.num_outputs]))
            box_regression.append(tf.reshape(box_conv(f), [-1, rows, 4]))
        return {"cls_logits": tf.concat(cls_logits, axis=1), "box_regression": tf.concat(box_regression, axis=1)}

    def call(self, x, training=False):
        return self.forward_head(self.forward_features(x, training=training))

    def get_config(self):
        # The spec is the whole architecture: saving it lets `.keras` files rebuild the model in safe mode.
        return {"name": self.name, "spec": dataclasses.asdict(self.spec)}

    @classmethod
    def from_config(cls, config):
        return cls(spec_from_dict(config["spec"]), name=config.get("name", "ssd"))


def _check_input(x, spec: DetectionSpec) -> None:
    h, w, c = spec.input_shape
    shape = tuple(x.shape)
    if len(shape) != 4 or any(d is not None and d != e for d, e in zip(shape[1:], (h, w, c))):
        raise InputError(f"images: expected a native batch of shape [N, {h}, {w}, {c}] (NHWC); received shape "
                         f"{list(shape)}")


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
    _check_input(x, model.spec)
    features = model.backbone.forward_features(x, training=training)
    y = features[-1]
    for extra in model.extras:
        y = extra(y, training=training)
        features.append(y)
    maps = [features[i] for i in model.levels]
    if model.necks is not None:
        maps = [neck(f, training=training) for neck, f in zip(model.necks, maps)]
    return maps


def build_model(spec: DetectionSpec) -> SSD:
    """The detector ``spec.model.detector`` names (only ``ssd`` so far)."""
    builders = {"ssd": SSD}
    if spec.model.detector == "yolo":
        from .yolo import YOLO  # the grid detector lives in its own module (yolo.py)
        builders["yolo"] = YOLO
    if spec.model.detector == "faster_rcnn":
        from .faster_rcnn import FasterRCNN
        builders["faster_rcnn"] = FasterRCNN
    model = builders[spec.model.detector](spec, name=spec.model.detector)
    model(keras.ops.zeros((1, *spec.input_shape)))  # create the variables now (Keras builds lazily)
    return model


def export_view(model, spec: DetectionSpec):
    """The part of ``model`` an exported graph holds, and its output keys: the whole network, except for
    the Faster R-CNN-style detector, whose graph stops at the RPN (``spec.export_limit`` says why)."""
    if spec.model.detector == "faster_rcnn":
        from .faster_rcnn import RPNExport
        return RPNExport(model), RPNExport.output_keys
    return model, tuple(spec.output_keys)


def predict(model: SSD, images: np.ndarray, *, with_features: bool = False, batch_size: int = 64,
            device: str = "cpu") -> dict[str, np.ndarray]:
    """Eval-mode head outputs for NHWC numpy images: ``cls_logits`` [N, A, K + 1], ``box_regression`` [N, A, 4].

    With ``with_features``, every anchor level's map too, as ``features.<l>``: [N, H_l, W_l, C_l].
    """
    h, w, c = model.spec.input_shape
    x_all = to_native(check_images(images, channels=c, size=(h, w)), device=device)
    forward = _inference_fn(model, with_features)
    chunks: dict[str, list[np.ndarray]] = {}
    with tf.device(resolve_device(device)):
        for start in range(0, x_all.shape[0], batch_size):
            for key, value in forward(x_all[start:start + batch_size]).items():
                chunks.setdefault(key, []).append(to_numpy(value))
    return {key: np.concatenate(parts) for key, parts in chunks.items()}


_INFERENCE_FNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _inference_fn(model: SSD, with_features: bool):
    # One traced graph per model and output set (tf.function), as Keras' predict would use.
    cache = _INFERENCE_FNS.setdefault(model, {})
    if with_features not in cache:
        @tf.function(reduce_retracing=True)
        def forward(x):
            features = model.forward_features(x, training=False)
            out = model.forward_head(features)
            if with_features:
                out.update({f"features.{i}": f for i, f in enumerate(features)})
            return out
        cache[with_features] = forward
    return cache[with_features]
