"""CTC loss (TensorFlow twin): ``tf.nn.ctc_loss`` on the per-step logits, a fixed-key dict."""

from __future__ import annotations

import tensorflow as tf
from keras import ops

from shared.specs.ocr import BLANK, OCRSpec


def compute_loss(outputs: dict, targets, spec: OCRSpec) -> dict:
    """outputs["logits"]: [N, T, K]; targets: [N, 1 + max_length] ints (label length, then the ids, 0-padded).

    Returns ``{"loss_ctc", "loss"}``: each line's CTC negative log-likelihood divided by its label length, then
    the mean over the batch. ``tf.nn.ctc_loss`` returns the per-line values (it takes logits and applies the
    log-softmax itself); the division and the mean are torch's ``reduction="mean"``, written out. The blank is
    index 0 (``blank_index``), as torch's ``blank``: TensorFlow's sparse-label default would be the last class.
    """
    logits = ops.cast(outputs["logits"], "float32")
    targets = ops.cast(targets, "int32")
    lengths, labels = targets[:, 0], targets[:, 1:]
    steps = ops.full((ops.shape(logits)[0],), ops.shape(logits)[1], dtype="int32")
    per_line = tf.nn.ctc_loss(labels=labels, logits=logits, label_length=lengths, logit_length=steps,
                              logits_time_major=False, blank_index=BLANK)
    ctc = ops.mean(per_line / ops.cast(lengths, "float32"))
    return {"loss_ctc": ctc, "loss": ctc}
