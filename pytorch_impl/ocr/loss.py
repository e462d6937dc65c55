"""CTC loss (PyTorch twin): ``F.ctc_loss`` on the per-step log-softmax, a fixed-key dict."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from shared.specs.ocr import BLANK, OCRSpec


def compute_loss(outputs: dict[str, torch.Tensor], targets: torch.Tensor, spec: OCRSpec) -> dict:
    """outputs["logits"]: [N, T, K]; targets: [N, 1 + max_length] int64 (label length, then the ids, 0-padded:
    shared/data/ocr.py ``encode_targets``).

    Returns ``{"loss_ctc", "loss"}``: each line's CTC negative log-likelihood divided by its label length, then
    the mean over the batch (torch's ``reduction="mean"``, which the TensorFlow twin computes the same way);
    blank at index 0 in both. ``zero_infinity`` stays off: the data never holds a label too long to align
    (shared.data.ocr.check_targets), and a silent zero would hide one."""
    logits = outputs["logits"].float()
    n, steps, _ = logits.shape
    lengths, labels = targets[:, 0], targets[:, 1:]
    # In float64: torch's CPU kernel computes the float32 gradient with an error of about 2e-6 on logit
    # gradients of 0.1 (measured against float64), twenty times TensorFlow's; in float64 it is exact to
    # float32's own rounding. The rest of the model stays float32.
    log_probs = F.log_softmax(logits.double(), dim=-1).transpose(0, 1)   # [T, N, K], what ctc_loss takes
    ctc = F.ctc_loss(log_probs, labels, torch.full((n,), steps, dtype=torch.long, device=logits.device), lengths,
                     blank=BLANK, reduction="mean", zero_infinity=False).float()
    return {"loss_ctc": ctc, "loss": ctc}
