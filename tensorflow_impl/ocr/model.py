"""CRNN (TensorFlow / Keras 3 twin): conv blocks that collapse the height, a bidirectional LSTM over the columns,
a per-step classifier (shared/specs/ocr.py).

Layer ``name=`` strings are the PyTorch attribute paths, so every weight maps to its canonical key
(``features.0.0.weight``, ``classifier.bias``; the LSTM through ``tensorflow_impl/bridge.py``'s LSTM rule:
``rnn.weight_ih_l0_reverse``). Reads line for line like ``pytorch_impl/ocr/model.py``; the differences are NHWC,
the ``training`` flag and Keras' LSTM (one bias, unrolled).
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
from keras import ops

from shared.specs.detection import spec_from_dict
from shared.specs.ocr import OCRSpec

from ..layers import BatchNorm2d, Conv2d, Linear, ModuleList, ReLU, Sequential
from ..tensors import batched_outputs, check_native


def conv_block(in_channels: int, out_channels: int, spec: OCRSpec, name: str) -> Sequential:
    """3x3 conv (no bias, padding 1) + BatchNorm + ReLU, children named 0, 1, 2."""
    m = spec.model
    return Sequential(Conv2d(in_channels, out_channels, 3, 1, 1, bias=False, name="0"),
                      BatchNorm2d(out_channels, m.bn_eps, m.bn_momentum, name="1"), ReLU(name="2"), name=name)


@keras.saving.register_keras_serializable("twinvision")
class LSTM(keras.layers.Layer):
    """torch's ``nn.LSTM(batch_first=True, bidirectional=True)`` on Keras: per layer ``l<k>``, a Bidirectional
    of two Keras LSTMs (the backward one reads the columns in reverse; outputs concatenated forward then
    backward, as torch does).

    Keras' LSTM has one bias where torch has two (the bridge adds them; the PyTorch twin holds its second at zero)
    and the same gate order. ``unroll``: the steps are the spec's fixed column count, and written out they give
    plain ops; Keras 3's loop form keeps a TensorList of dynamic batch size that the TFLite converter cannot
    lower without TensorFlow's own kernels (docs/DEPENDENCIES.md).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, **kwargs):
        super().__init__(**kwargs)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.layers_ = []
        for k in range(num_layers):
            forward = keras.layers.LSTM(hidden_size, return_sequences=True, unroll=True, name=f"l{k}")
            backward = keras.layers.LSTM(hidden_size, return_sequences=True, unroll=True, go_backwards=True,
                                         name=f"l{k}_reverse")
            self.layers_.append(keras.layers.Bidirectional(forward, backward_layer=backward, name=f"l{k}"))

    def call(self, x):  # [N, T, input_size] -> [N, T, 2 * hidden_size]
        for layer in self.layers_:
            x = layer(x)
        return x

    def get_config(self):
        return {**super().get_config(), "input_size": self.input_size, "hidden_size": self.hidden_size,
                "num_layers": self.num_layers}


@keras.saving.register_keras_serializable("twinvision")
class CRNN(keras.Model):
    """Input: line images [N, H, W, C] float32 at the spec's size; ``call`` returns ``{"logits": [N, T, K]}``."""

    def __init__(self, spec: OCRSpec, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        m = spec.model
        ins = (spec.input_shape[2], *m.channels[:-1])
        self.features = ModuleList([conv_block(i, o, spec, str(j)) for j, (i, o) in enumerate(zip(ins, m.channels))],
                                   name="features")
        self.rnn = LSTM(m.channels[-1] * spec.rows, m.hidden, m.lstm_layers, name="rnn")
        self.classifier = Linear(2 * m.hidden, m.num_classes, name="classifier")

    def forward_features(self, x, training=False) -> list:
        """The last conv map [N, H', T, C] and the LSTM's outputs [N, T, 2 * hidden]."""
        h, w, c = self.spec.input_shape
        check_native(x, c, (h, w))
        for block, pool in zip(self.features, self.spec.model.pools):
            x = ops.max_pool(block(x, training=training), pool, pool, padding="valid")
        rows, steps, channels = x.shape[1], x.shape[2], x.shape[3]
        # Each column's features, channel-major (c * rows + r), as torch's NCHW reshape orders them.
        sequence = ops.reshape(ops.transpose(x, (0, 2, 3, 1)), (-1, steps, channels * rows))
        return [x, self.rnn(sequence)]

    def forward_head(self, features: list, training=False) -> dict:
        return {"logits": self.classifier(features[-1])}

    def call(self, x, training=False):
        return self.forward_head(self.forward_features(x, training=training), training=training)

    def get_config(self):
        # The spec is the whole architecture: saving it lets `.keras` files rebuild the model in safe mode.
        return {"name": self.name, "spec": dataclasses.asdict(self.spec)}

    @classmethod
    def from_config(cls, config):
        return cls(spec_from_dict(config["spec"], OCRSpec), name=config.get("name", "crnn"))


def build_model(spec: OCRSpec) -> CRNN:
    model = CRNN(spec, name="crnn")
    model(keras.ops.zeros((1, *spec.input_shape)))  # create the variables now (Keras builds lazily)
    return model


def predict(model: CRNN, images: np.ndarray, *, with_features: bool = False, batch_size: int = 256,
            device: str = "cpu") -> dict[str, np.ndarray]:
    """Eval-mode outputs for NHWC numpy line images: ``logits`` [N, T, K]; with ``with_features``, the last conv
    map as ``features.0`` ([N, H', T, C]) and the LSTM's outputs as ``features.1`` ([N, T, 2 * hidden])."""
    return batched_outputs(model, images, with_features=with_features, batch_size=batch_size, device=device)
