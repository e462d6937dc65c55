"""The transfer-learning network (TensorFlow twin): the classification ResNet with some layers frozen.

``trainable_prefixes`` (the spec's ``trainable``) names the canonical paths that train; every other top-level
layer gets ``trainable = False``, which removes its variables from training and makes its BatchNorm normalise
with the running statistics (tensorflow_impl/layers.py), as the PyTorch twin's frozen layers do in eval mode.
"""

from __future__ import annotations

import keras

from shared.specs.classification import ResNetSpec
from shared.specs.transfer_learning import TransferSpec

from ..classification.model import ResNet


@keras.saving.register_keras_serializable("twinvision")
class TransferNet(ResNet):
    """A ResNet whose layers outside ``trainable_prefixes`` are frozen (("",): none are)."""

    def __init__(self, spec: ResNetSpec, input_size: tuple[int, int] | None = None,
                 trainable_prefixes: tuple[str, ...] = ("",), **kwargs):
        super().__init__(spec, input_size, **kwargs)
        self.trainable_prefixes = tuple(trainable_prefixes)
        for name in ("conv1", "bn1", *self.stage_names, "fc"):
            getattr(self, name).trainable = name.startswith(self.trainable_prefixes)

    def get_config(self):
        return {**super().get_config(), "trainable_prefixes": list(self.trainable_prefixes)}

    @classmethod
    def from_config(cls, config):
        base = ResNet.from_config(config)
        return cls(base.spec, config.get("input_size"), tuple(config.get("trainable_prefixes", ("",))),
                   name=config.get("name", "resnet"))


def build_model(spec: TransferSpec) -> TransferNet:
    """The spec's network, frozen per its strategy; the pretrained body is loaded by the caller (the report's
    initialisation reads it from the source run's cache)."""
    model = TransferNet(spec.model, spec.input_shape[:2], spec.trainable, name="resnet")
    model(keras.ops.zeros((1, *spec.input_shape)))  # create the variables now (Keras builds lazily)
    return model
