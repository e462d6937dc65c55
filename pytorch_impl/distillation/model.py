"""The distillation student (PyTorch twin): the classification twin's ResNet at the spec's smaller widths.

The teacher needs no model here: it is frozen, so its logits come with the data (shared/data/distillation.py)
and only the student is trained, exported and served.
"""

from __future__ import annotations

from shared.specs.distillation import DistillationSpec

from ..classification.model import ResNet
from ..classification.model import build_model as build_resnet


def build_model(spec: DistillationSpec) -> ResNet:
    """The student network of ``spec`` (``spec.model``), served at the data's image size."""
    return build_resnet(spec)
