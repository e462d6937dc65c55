"""The transfer-learning network (PyTorch twin): the classification ResNet with some layers frozen.

``trainable_prefixes`` (the spec's ``trainable``) names the canonical parameter paths that train; every other
parameter has ``requires_grad`` off, and every other BatchNorm normalises with its running statistics in
training too (kept in eval mode by ``train``), as a Keras layer with ``trainable = False`` does.
"""

from __future__ import annotations

from torch import nn

from shared.specs.classification import ResNetSpec
from shared.specs.transfer_learning import TransferSpec

from ..classification.model import ResNet


class TransferNet(ResNet):
    """A ResNet whose parameters outside ``trainable_prefixes`` are frozen (("",): none are)."""

    def __init__(self, spec: ResNetSpec, input_size: tuple[int, int] | None = None,
                 trainable_prefixes: tuple[str, ...] = ("",)):
        super().__init__(spec, input_size)
        self.trainable_prefixes = tuple(trainable_prefixes)
        for name, parameter in self.named_parameters():
            parameter.requires_grad_(name.startswith(self.trainable_prefixes))

    def train(self, mode: bool = True) -> "TransferNet":
        super().train(mode)
        for name, module in self.named_modules():
            if isinstance(module, nn.BatchNorm2d) and not name.startswith(self.trainable_prefixes):
                module.eval()  # frozen: its running statistics, never the batch's, and no update of them
        return self


def build_model(spec: TransferSpec) -> TransferNet:
    """The spec's network, frozen per its strategy; the pretrained body is loaded by the caller (the report's
    initialisation reads it from the source run's cache)."""
    return TransferNet(spec.model, spec.input_shape[:2], spec.trainable)


# One side only, with the reason (tests/test_structure.py reads this).
FRAMEWORK_SPECIFIC = {
    "TransferNet.train": "torch's train() puts every BatchNorm on batch statistics; a frozen one must stay in eval "
                         "mode, which Keras gets from trainable=False on the layer",
}
