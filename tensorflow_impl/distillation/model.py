"""The distillation student (TensorFlow twin): the classification twin's ResNet at the spec's smaller widths.

The task's teacher is frozen, so its logits come with the data (shared/data/distillation.py) and only the
student is trained, exported and served; ``Distiller`` is the online form, the teacher called in every step.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from shared.specs.distillation import DistillationSpec

from ..classification.model import ResNet
from ..classification.model import build_model as build_resnet
from .loss import distillation_loss


def build_model(spec: DistillationSpec) -> ResNet:
    """The student network of ``spec`` (``spec.model``), served at the data's image size."""
    return build_resnet(spec)


class Distiller(keras.Model):
    """Online distillation as the Keras guide writes it: a model holding the student and the frozen teacher
    whose ``train_step`` calls the teacher on every batch. The task trains offline instead (the teacher's logits
    computed once and carried in the targets, the same loss when nothing is augmented); this is the form for a
    teacher whose inputs change every step, and the test that the two forms compute the same loss.

    ``call(images)`` returns the student's logits and the teacher's; ``train_step((images, labels))`` runs one
    step of the student (``compile(optimizer=...)`` first) on the distillation loss and returns its terms."""

    def __init__(self, student: keras.Model, teacher: keras.Model, spec: DistillationSpec, **kwargs):
        super().__init__(**kwargs)
        self.student, self.teacher, self.spec = student, teacher, spec
        self.teacher.trainable = False

    def call(self, images, training=False):
        teacher = ops.stop_gradient(self.teacher(images, training=False)["logits"])
        return {"logits": self.student(images, training=training)["logits"], "teacher_logits": teacher}

    def train_step(self, data):
        images, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            outputs = self(images, training=True)
            losses = distillation_loss(outputs["logits"], outputs["teacher_logits"], labels, self.spec.distill)
        variables = self.student.trainable_variables
        self.optimizer.apply(tape.gradient(losses["loss"], variables), variables)
        return losses
