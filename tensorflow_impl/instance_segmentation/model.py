"""Mask R-CNN-style instance segmenter (TensorFlow / Keras 3 twin): the detection twin's Faster R-CNN-style
detector plus a mask head on RoIAlign features.

Reads line for line like ``pytorch_impl/instance_segmentation/model.py``, whose docstring states the design.
Layer ``name=`` strings are the PyTorch attribute paths (``mask_head.convs.0``, ``mask_head.upsample``); the
transposed conv is the layers' ``ConvTranspose2d`` (torch's output size and crop).
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from shared.specs.instance_segmentation import InstanceSegmentationSpec, spec_from_dict

from ..classification.model import HE_FAN_OUT
from ..detection import faster_rcnn
from ..detection.faster_rcnn import FasterRCNN, RPNExport
from ..layers import Conv2d, ConvTranspose2d, ModuleList
from ..ops import roi_align
from ..tensors import batched_outputs


class MaskHead(keras.layers.Layer):
    """RoIAlign, ``mask.layers`` 3x3 conv + ReLU, a x2 transposed conv + ReLU, 1x1 conv to K class logits."""

    def __init__(self, in_channels: int, stride: int, spec: InstanceSegmentationSpec, **kwargs):
        super().__init__(**kwargs)
        m = spec.mask
        self.stride, self.output_size, self.sampling_ratio = stride, m.roi_output_size, m.sampling_ratio
        widths = (in_channels, *m.layers)
        # torchvision's MaskRCNNHeads / MaskRCNNPredictor initialisation: He normal (fan_out), zero bias.
        init = {"kernel_initializer": HE_FAN_OUT, "bias_initializer": "zeros"}
        self.convs = ModuleList([Conv2d(a, b, 3, 1, 1, name=str(i), **init)
                                 for i, (a, b) in enumerate(zip(widths, widths[1:]))], name="convs")
        self.upsample = ConvTranspose2d(widths[-1], widths[-1], 2, 2, 0, name="upsample", **init)
        self.logits = Conv2d(widths[-1], spec.model.num_classes, 1, 1, 0, name="logits", **init)

    def call(self, feature, boxes):
        """feature [N, H, W, C] (the RoI level), boxes [N, R, 4] x1y1x2y2 pixels -> mask logits [N, R, S, S, K]."""
        n, r = tf.shape(boxes)[0], tf.shape(boxes)[1]
        batch_index = tf.repeat(tf.range(n), r)
        x = roi_align(feature, tf.reshape(boxes, [-1, 4]), batch_index, self.output_size, 1.0 / self.stride,
                      self.sampling_ratio, True)                                      # [N * R, h, w, C]
        for conv in self.convs:
            x = tf.nn.relu(conv(x))
        x = self.logits(tf.nn.relu(self.upsample(x)))                                 # [N * R, S, S, K]
        return tf.reshape(x, tf.concat([[n, r], tf.shape(x)[1:]], 0))


@keras.saving.register_keras_serializable("twinvision")
class MaskRCNN(FasterRCNN):
    """The two-stage detector (``FasterRCNN``: its outputs, its ``forward_features`` / ``forward_head`` split)
    and ``mask_head`` on its RoI level. ``training=False`` adds ``mask_logits`` [N, P, S, S, K], the masks of
    every proposal slot; ``training=True`` adds ``mask_head``, bound to this batch's features: boxes [N, R, 4]
    -> logits [N, R, S, S, K] (``compute_loss`` runs it on the positive RoIs it picks)."""

    def __init__(self, spec: InstanceSegmentationSpec, **kwargs):
        super().__init__(spec, **kwargs)
        self.mask_head = MaskHead(self.roi_channels, self.roi_stride, spec, name="mask_head")

    def forward_after_rpn(self, feature, rpn: dict, training=False) -> dict:
        out = super().forward_after_rpn(feature, rpn, training)
        if training:
            out["mask_head"] = lambda boxes: self.mask_head(feature, boxes)
        else:
            out["mask_logits"] = self.mask_head(feature, out["proposals"])
        return out

    def get_config(self):
        return {"name": self.name, "spec": dataclasses.asdict(self.spec)}

    @classmethod
    def from_config(cls, config):
        return cls(spec_from_dict(config["spec"]), name=config.get("name", "mask_rcnn"))


def build_model(spec: InstanceSegmentationSpec) -> MaskRCNN:
    """The Mask R-CNN-style model of ``spec``, its variables created."""
    model = MaskRCNN(spec, name="mask_rcnn")
    model(keras.ops.zeros((1, *spec.input_shape)))  # create the variables now (Keras builds lazily)
    return model


def export_view(model: MaskRCNN, spec: InstanceSegmentationSpec):
    """The part an exported graph holds, and its output keys: backbone, RPN and the RoI level's map
    (``spec.export_limit``)."""
    return RPNExport(model), RPNExport.output_keys


def finish_export(model: MaskRCNN, spec: InstanceSegmentationSpec, exported: dict[str, np.ndarray]) -> dict:
    """Every eval-mode output from the export view's (any backend's): proposals, box and mask heads run here."""
    return faster_rcnn.finish_export(model, exported)


def predict(model: MaskRCNN, images: np.ndarray, *, with_features: bool = False, batch_size: int = 32,
            device: str = "cpu") -> dict[str, np.ndarray]:
    """Eval-mode outputs for NHWC numpy images (``spec.output_keys``), as numpy; with ``with_features`` every
    anchor level's map too, as ``features.<l>`` [N, H_l, W_l, C_l]."""
    return batched_outputs(model, images, with_features=with_features, batch_size=batch_size, device=device)
