"""CRNN (PyTorch twin): conv blocks that collapse the height, a bidirectional LSTM over the columns, a per-step
classifier (shared/specs/ocr.py). Attribute names are the canonical weight keys (``features.0.0.weight``,
``rnn.weight_ih_l0_reverse``, ``classifier.weight``); ``tensorflow_impl/ocr/model.py`` reads line for line alike.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shared.specs.ocr import OCRSpec

from ..layers import BatchNorm2d, Conv2d, Linear, ReLU, Sequential
from ..tensors import batched_outputs, check_native


def conv_block(in_channels: int, out_channels: int, spec: OCRSpec) -> Sequential:
    """3x3 conv (no bias, padding 1) + BatchNorm + ReLU, children named 0, 1, 2."""
    m = spec.model
    return Sequential(Conv2d(in_channels, out_channels, 3, 1, 1, bias=False),
                      BatchNorm2d(out_channels, m.bn_eps, m.bn_momentum), ReLU())


class LSTM(nn.LSTM):
    """torch's bidirectional LSTM (batch first) with one bias per gate, as Keras has.

    torch adds two bias vectors, ``bias_ih`` and ``bias_hh``, that only ever appear as their sum: trained both,
    the sum moves by two optimiser steps for Keras' one (twice the SGD step; two Adam steps). The twin keeps
    torch's layer and its weight names (a torch LSTM's ``state_dict`` loads), but holds every ``bias_hh`` at
    zero as a buffer, not a parameter: ``bias_ih`` is the one bias, the value Keras' ``bias`` holds
    (tensorflow_impl/bridge.py). The gate order is the same in both (input, forget, cell, output).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int):
        super().__init__(input_size, hidden_size, num_layers=num_layers, batch_first=True, bidirectional=True)
        with torch.no_grad():
            for name in [n for n in self._flat_weights_names if n.startswith("bias_hh")]:
                delattr(self, name)
                self.register_buffer(name, torch.zeros(4 * hidden_size))
        self._init_flat_weights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, T, input_size] -> [N, T, 2 * hidden_size]
        return super().forward(x)[0]  # the outputs of every step; the final states are not used


class CRNN(nn.Module):
    """Input: line images [N, C, H, W] float32 at the spec's size; ``forward`` returns ``{"logits": [N, T, K]}``
    (T = W / the width pools; K = the blank and the characters)."""

    def __init__(self, spec: OCRSpec):
        super().__init__()
        self.spec = spec
        m = spec.model
        ins = (spec.input_shape[2], *m.channels[:-1])
        self.features = nn.ModuleList([conv_block(i, o, spec) for i, o in zip(ins, m.channels)])
        self.rnn = LSTM(m.channels[-1] * spec.rows, m.hidden, m.lstm_layers)
        self.classifier = Linear(2 * m.hidden, m.num_classes)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The last conv map [N, C, H', T] and the LSTM's outputs [N, T, 2 * hidden]."""
        h, w, c = self.spec.input_shape
        check_native(x, c, (h, w))
        for block, pool in zip(self.features, self.spec.model.pools):
            x = F.max_pool2d(block(x), pool, pool)
        n, channels, rows, steps = x.shape
        # Each column's features, channel-major (c * rows + r): the order the Keras twin builds from NHWC.
        sequence = x.permute(0, 3, 1, 2).reshape(n, steps, channels * rows)
        return [x, self.rnn(sequence)]

    def forward_head(self, features: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"logits": self.classifier(features[-1])}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_head(self.forward_features(x))


def build_model(spec: OCRSpec) -> CRNN:
    return CRNN(spec)


def predict(model: CRNN, images: np.ndarray, *, with_features: bool = False, batch_size: int = 256,
            device: str | torch.device = "cpu") -> dict[str, np.ndarray]:
    """Eval-mode outputs for NHWC numpy line images: ``logits`` [N, T, K]; with ``with_features``, the last conv
    map as ``features.0`` ([N, H', T, C], NHWC) and the LSTM's outputs as ``features.1`` ([N, T, 2 * hidden])."""
    return batched_outputs(model, images, with_features=with_features, batch_size=batch_size, device=device)
