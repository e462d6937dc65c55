"""Knowledge-distillation loss (TensorFlow twin): hard-label cross-entropy plus the softened teacher's KL term."""

from __future__ import annotations

import keras
from keras import ops

from shared.data.distillation import LABEL_COLUMN
from shared.specs.distillation import DistillationLossSpec, DistillationSpec


def distillation_loss(student_logits, teacher_logits, labels, distill: DistillationLossSpec) -> dict:
    """alpha * CE(student, labels) + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T)).

    The KL term is summed over classes and averaged over the batch, from log-probabilities on both sides, as
    torch's ``kl_div(..., reduction="batchmean", log_target=True)``. Not ``keras.losses.KLDivergence`` (the
    Keras guide's choice): it clips both distributions to [1e-7, 1] before the log, which moves the loss by
    more than the 1e-6 parity bound once the teacher is confident (a class at p < 1e-7 is common at T = 1).
    Returns ``{"loss_classifier": CE, "loss_distillation": T^2 KL, "loss": weighted total}``.
    """
    t = distill.temperature
    ce = ops.mean(keras.losses.sparse_categorical_crossentropy(labels, student_logits, from_logits=True))
    log_teacher = ops.log_softmax(ops.stop_gradient(teacher_logits) / t, axis=-1)
    log_student = ops.log_softmax(student_logits / t, axis=-1)
    kl = ops.mean(ops.sum(ops.exp(log_teacher) * (log_teacher - log_student), axis=-1))
    soft = kl * (t * t)
    return {"loss_classifier": ce, "loss_distillation": soft,
            "loss": distill.alpha * ce + (1.0 - distill.alpha) * soft}


def compute_loss(outputs: dict, targets, spec: DistillationSpec) -> dict:
    """outputs["logits"]: [N, classes]; targets: [N, 1 + classes] float32, the label then the teacher's logits
    (``shared.data.distillation.pack_targets``)."""
    labels = ops.cast(targets[:, LABEL_COLUMN], "int32")
    teacher = targets[:, LABEL_COLUMN + 1:]
    return distillation_loss(outputs["logits"], teacher, labels, spec.distill)
