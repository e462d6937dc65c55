"""The distillation student (PyTorch twin): the classification twin's ResNet at the spec's smaller widths.

The task's teacher is frozen, so its logits come with the data (shared/data/distillation.py) and only the
student is trained, exported and served; ``Distiller`` is the online form, the teacher called in every step.
"""

from __future__ import annotations

import torch
from torch import nn

from shared.specs.distillation import DistillationSpec

from ..classification.model import ResNet
from ..classification.model import build_model as build_resnet
from .loss import distillation_loss


def build_model(spec: DistillationSpec) -> ResNet:
    """The student network of ``spec`` (``spec.model``), served at the data's image size."""
    return build_resnet(spec)


class Distiller(nn.Module):
    """Online distillation, the teacher called in every step: a frozen teacher (eval mode, no gradient) beside
    the student. The task trains offline instead (the teacher's logits computed once and carried in the targets,
    the same loss when nothing is augmented); this is the form for a teacher whose inputs change every step
    (augmented images), and the test that the two forms compute the same loss.

    ``forward(images)`` returns the student's logits and the teacher's; ``train_step(images, labels, optimizer)``
    runs one step of the student on the distillation loss and returns its terms."""

    def __init__(self, student: nn.Module, teacher: nn.Module, spec: DistillationSpec):
        super().__init__()
        self.student, self.teacher, self.spec = student, teacher.eval(), spec
        for parameter in self.teacher.parameters():
            parameter.requires_grad_(False)

    def train(self, mode: bool = True) -> "Distiller":
        super().train(mode)
        self.teacher.eval()  # frozen: BatchNorm on its running statistics, in training too
        return self

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            teacher = self.teacher(images)["logits"]
        return {"logits": self.student(images)["logits"], "teacher_logits": teacher}

    def train_step(self, images: torch.Tensor, labels: torch.Tensor, optimizer: torch.optim.Optimizer) -> dict:
        self.train()
        outputs = self(images)
        losses = distillation_loss(outputs["logits"], outputs["teacher_logits"], labels, self.spec.distill)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()
        return {k: float(v.detach()) for k, v in losses.items()}


# One side only, with the reason (tests/test_structure.py reads this).
FRAMEWORK_SPECIFIC = {
    "Distiller.train": "torch's train() would put the teacher's BatchNorm on batch statistics; Keras gets the same "
                       "from trainable=False on the teacher",
}
