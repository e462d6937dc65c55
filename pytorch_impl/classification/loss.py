"""Classification loss (PyTorch twin): softmax cross-entropy, as a fixed-key dict."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from shared.specs.classification import ClassificationSpec


def compute_loss(outputs: dict[str, torch.Tensor], targets: torch.Tensor, spec: ClassificationSpec) -> dict:
    """outputs["logits"]: [N, classes]; targets: [N] int64 class ids.

    Returns ``{"loss_classifier": mean CE, "loss": total}``.
    """
    ce = F.cross_entropy(outputs["logits"], targets)
    return {"loss_classifier": ce, "loss": ce}
