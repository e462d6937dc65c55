"""Semantic segmenters (TensorFlow / Keras 3 twin): FCN, U-Net and DeepLab-style decoders on the classification
twin's ResNet.

Layer ``name=`` strings are the PyTorch attribute paths, so every weight maps to its canonical key
(``backbone.layer1.0.conv1.weight``, ``score.0.bias``, ``up.1.weight``, ``aspp.convs.2.0.weight``). Reads line
for line like ``pytorch_impl/semantic_segmentation/model.py``; the differences are NHWC and the ``training``
flag.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
from keras import ops

from shared.kernels import bilinear_kernel
from shared.specs.detection import spec_from_dict
from shared.specs.semantic_segmentation import SegmentationSpec

from ..classification.model import ResNet
from ..layers import BatchNorm2d, Conv2d, ConvTranspose2d, ModuleList, ReLU, Sequential, resize_bilinear
from ..tensors import batched_outputs, check_native


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int, spec: SegmentationSpec,
                 dilation: int = 1, name: str = "0") -> Sequential:
    """Conv (no bias; 'same' size, dilated by ``dilation``) + BatchNorm + ReLU, children named 0, 1, 2."""
    eps, mom = spec.model.backbone.bn_eps, spec.model.backbone.bn_momentum
    pad = dilation * (kernel_size - 1) // 2
    return Sequential(Conv2d(in_channels, out_channels, kernel_size, 1, pad, dilation=dilation, bias=False, name="0"),
                      BatchNorm2d(out_channels, eps, mom, name="1"), ReLU(name="2"), name=name)


def upsampler(channels: int, factor: int, name: str) -> ConvTranspose2d:
    """A learned x``factor`` upsampling (kernel 2 * factor, stride factor, padding factor / 2: exactly
    ``factor`` times the size), initialised to bilinear interpolation, FCN's choice."""
    kernel = bilinear_kernel(channels, 2 * factor).transpose(2, 3, 1, 0)  # canonical -> Keras (kh, kw, out, in)
    return ConvTranspose2d(channels, channels, 2 * factor, factor, factor // 2, bias=False,
                           kernel_initializer=keras.initializers.Constant(kernel), name=name)


class ASPP(keras.layers.Layer):
    """Atrous spatial pyramid pooling (DeepLab v3): a 1x1 branch, a dilated 3x3 branch per rate and an
    image-pooling branch, concatenated and projected to ``width`` channels.

    The pooling branch has no BatchNorm (as in the PyTorch twin, where torchvision's would fail on a batch of
    one image in training): global average, 1x1 conv with bias, ReLU, broadcast back over the map.
    """

    def __init__(self, in_channels: int, width: int, rates: tuple[int, ...], spec: SegmentationSpec, **kwargs):
        super().__init__(**kwargs)
        self.convs = ModuleList([conv_bn_relu(in_channels, width, 1, spec, name="0")]
                                + [conv_bn_relu(in_channels, width, 3, spec, rate, name=str(i + 1))
                                   for i, rate in enumerate(rates)], name="convs")
        self.pool = Conv2d(in_channels, width, 1, 1, 0, name="pool")
        self.project = conv_bn_relu(width * (len(rates) + 2), width, 1, spec, name="project")

    def call(self, x, training=False):
        branches = [conv(x, training=training) for conv in self.convs]
        pooled = ops.relu(self.pool(ops.mean(x, axis=(1, 2), keepdims=True)))
        branches.append(ops.broadcast_to(pooled, ops.shape(branches[0])))
        return self.project(ops.concatenate(branches, axis=-1), training=training)


@keras.saving.register_keras_serializable("twinvision")
class Segmenter(keras.Model):
    """Backbone and the decoder ``spec.model.arch`` names (shared/specs/semantic_segmentation.py).

    Input: images [N, H, W, C] float32 at the spec's size; ``call`` returns ``{"logits": [N, H, W, K]}``.
    """

    def __init__(self, spec: SegmentationSpec, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        m = spec.model
        k, channels = m.num_classes, m.stage_channels
        self.backbone = ResNet(m.backbone, name="backbone")
        # Run through forward_features, never through __call__: Keras would not mark it built (and warn about
        # "unbuilt state"); its layers build when first called. Its classifier is never built: no variables.
        self.backbone.built = True
        deepest = len(channels) - 1
        self.skip_stages = [deepest - j for j in range(1, m.skips + 1)]   # shallower stages the decoder adds
        self.final_factor = 2 ** (deepest - m.skips)                       # what is left to full size after them
        if m.arch == "fcn":
            self.score = ModuleList([Conv2d(channels[i], k, 1, 1, 0, name=str(j))
                                     for j, i in enumerate([deepest, *self.skip_stages])], name="score")
            self.up = ModuleList([upsampler(k, 2, str(j)) for j in range(len(self.skip_stages))], name="up")
            width = k
        elif m.arch == "unet":
            # U-Net's symmetry: the decoder level of stage i has stage i's channels, halving as the size doubles.
            inputs = [channels[i] for i in [deepest, *self.skip_stages]]
            self.up = ModuleList([ConvTranspose2d(inputs[j], channels[i], 2, 2, 0, name=str(j))
                                  for j, i in enumerate(self.skip_stages)], name="up")
            self.decode = ModuleList([Sequential(conv_bn_relu(2 * channels[i], channels[i], 3, spec, name="0"),
                                                 conv_bn_relu(channels[i], channels[i], 3, spec, name="1"), name=str(j))
                                      for j, i in enumerate(self.skip_stages)], name="decode")
            self.classifier = Conv2d(inputs[-1], k, 1, 1, 0, name="classifier")
            width = k
        else:
            self.aspp = ASPP(channels[deepest], m.decoder_width, m.atrous_rates, spec, name="aspp")
            self.classifier = Conv2d(m.decoder_width, k, 1, 1, 0, name="classifier")
            width = None  # resized bilinearly, no learned upsampling
        self.final_up = upsampler(width, self.final_factor, "final_up") if width and self.final_factor > 1 else None

    def forward_features(self, x, training=False) -> list:
        """Every backbone stage's map, [N, H_i, W_i, C_i], shallow to deep."""
        h, w, c = self.spec.input_shape
        check_native(x, c, (h, w))
        return self.backbone.forward_features(x, training=training)

    def forward_head(self, features: list, training=False) -> dict:
        """Stage maps -> ``{"logits": [N, H, W, K]}`` at the input's size."""
        arch, y = self.spec.model.arch, features[-1]
        if arch == "fcn":
            y = self.score[0](y)
            for j, i in enumerate(self.skip_stages):
                y = self.up[j](y) + self.score[j + 1](features[i])
        elif arch == "unet":
            for j, i in enumerate(self.skip_stages):
                y = self.decode[j](ops.concatenate([ops.relu(self.up[j](y)), features[i]], axis=-1),
                                   training=training)
            y = self.classifier(y)
        else:
            y = resize_bilinear(self.classifier(self.aspp(y, training=training)), self.spec.input_shape[:2])
        if self.final_up is not None:
            y = self.final_up(y)
        return {"logits": y}

    def call(self, x, training=False):
        return self.forward_head(self.forward_features(x, training=training), training=training)

    def get_config(self):
        # The spec is the whole architecture: saving it lets `.keras` files rebuild the model in safe mode.
        return {"name": self.name, "spec": dataclasses.asdict(self.spec)}

    @classmethod
    def from_config(cls, config):
        return cls(spec_from_dict(config["spec"], SegmentationSpec), name=config.get("name", "segmenter"))


def build_model(spec: SegmentationSpec) -> Segmenter:
    model = Segmenter(spec, name=spec.model.arch)
    model(keras.ops.zeros((1, *spec.input_shape)))  # create the variables now (Keras builds lazily)
    return model


def predict(model: Segmenter, images: np.ndarray, *, with_features: bool = False, batch_size: int = 64,
            device: str = "cpu") -> dict[str, np.ndarray]:
    """Eval-mode outputs for NHWC numpy images: ``logits`` [N, H, W, K]; with ``with_features``, every backbone
    stage's map as ``features.<i>``: [N, H_i, W_i, C_i]."""
    return batched_outputs(model, images, with_features=with_features, batch_size=batch_size, device=device)
