"""Knowledge-distillation loss (PyTorch twin): hard-label cross-entropy plus the softened teacher's KL term."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from shared.data.distillation import LABEL_COLUMN
from shared.specs.distillation import DistillationLossSpec, DistillationSpec


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                      distill: DistillationLossSpec) -> dict[str, torch.Tensor]:
    """alpha * CE(student, labels) + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T)).

    The KL term is averaged over the batch (``batchmean``: the sum over classes, then the mean over images)
    and computed from log-probabilities on both sides (``log_target``), as the TensorFlow twin does.
    Returns ``{"loss_classifier": CE, "loss_distillation": T^2 KL, "loss": weighted total}``.
    """
    t = distill.temperature
    ce = F.cross_entropy(student_logits, labels)
    kl = F.kl_div(F.log_softmax(student_logits / t, dim=-1), F.log_softmax(teacher_logits.detach() / t, dim=-1),
                  reduction="batchmean", log_target=True)
    soft = kl * (t * t)
    return {"loss_classifier": ce, "loss_distillation": soft,
            "loss": distill.alpha * ce + (1.0 - distill.alpha) * soft}


def compute_loss(outputs: dict[str, torch.Tensor], targets: torch.Tensor, spec: DistillationSpec) -> dict:
    """outputs["logits"]: [N, classes]; targets: [N, 1 + classes] float32, the label then the teacher's logits
    (``shared.data.distillation.pack_targets``)."""
    labels = targets[:, LABEL_COLUMN].long()
    teacher = targets[:, LABEL_COLUMN + 1:]
    return distillation_loss(outputs["logits"], teacher, labels, spec.distill)
