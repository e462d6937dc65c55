"""Classification loss (TensorFlow twin): softmax cross-entropy, as a fixed-key dict."""

from __future__ import annotations

import keras
from keras import ops

from shared.specs.classification import ClassificationSpec


def compute_loss(outputs: dict, targets, spec: ClassificationSpec) -> dict:
    """outputs["logits"]: [N, classes]; targets: [N] int class ids.

    Returns ``{"loss_classifier": mean CE, "loss": total}``.
    """
    ce = ops.mean(keras.losses.sparse_categorical_crossentropy(targets, outputs["logits"], from_logits=True))
    return {"loss_classifier": ce, "loss": ce}
