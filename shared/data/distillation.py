"""Distillation data: the classification images and labels, each image with its teacher's logits.

The targets of the task are one float32 array [N, 1 + classes]: column 0 the label, the rest the teacher's
logits (``pack_targets``; both twins' losses take it apart with ``LABEL_COLUMN``), so a batch's index array
slices labels and soft targets together, as every task's targets.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .classification import load_classification
from .validate import InputError, check_labels

LABEL_COLUMN = 0  # targets[:, 0] is the label (an integer stored as float32: exact below 2^24)


@dataclass(frozen=True)
class Split:
    """images: [N, H, W, C] float32 in [0, 1]; labels: [N] int64; teacher_logits: [N, classes] float32, or None
    until a teacher is attached (``with_teacher``)."""

    images: np.ndarray
    labels: np.ndarray
    teacher_logits: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def targets(self) -> np.ndarray:
        """[N, 1 + classes] float32: the label, then the teacher's logits (every task's Split has this name)."""
        if self.teacher_logits is None:
            raise InputError("distillation targets: this split has no teacher logits yet; the report attaches the "
                             "classification teacher's (compare/tasks/distillation.py: attach_teacher), or use "
                             "teacher='ridge'")
        return pack_targets(self.labels, self.teacher_logits)


@dataclass(frozen=True)
class DistillationData:
    train: Split
    test: Split
    class_names: tuple[str, ...]
    teacher: str  # what the teacher logits come from ("ridge", or the attaching model's description)
    teacher_weights: str | None = None  # the teacher network's canonical weights file, where there is one


def pack_targets(labels: np.ndarray, teacher_logits: np.ndarray) -> np.ndarray:
    """Labels [N] and teacher logits [N, C] as one float32 array [N, 1 + C], checked."""
    teacher_logits = np.asarray(teacher_logits)
    if teacher_logits.ndim != 2 or teacher_logits.shape[0] != len(labels):
        raise InputError(f"teacher logits: expected shape [{len(labels)}, classes] (one row per label); received "
                         f"{teacher_logits.shape}")
    if not np.isfinite(teacher_logits).all():
        raise InputError(f"teacher logits: expected finite values; received "
                         f"{int((~np.isfinite(teacher_logits)).sum())} NaN/inf values")
    labels = check_labels(labels, num_classes=teacher_logits.shape[1], name="labels")
    return np.concatenate([labels[:, None].astype(np.float32), teacher_logits.astype(np.float32)], axis=1)


def check_targets(targets, num_classes: int, n: int | None = None) -> np.ndarray:
    """Validate packed targets [N, 1 + num_classes] (label column then finite teacher logits)."""
    targets = np.asarray(targets)
    if targets.ndim != 2 or targets.shape[1] != 1 + num_classes or targets.dtype != np.float32:
        raise InputError(f"distillation targets: expected float32 [N, {1 + num_classes}] (the label, then "
                         f"{num_classes} teacher logits); received {targets.dtype} {targets.shape}")
    if n is not None and targets.shape[0] != n:
        raise InputError(f"distillation targets: expected {n} rows (one per image); received {targets.shape[0]}")
    labels = targets[:, LABEL_COLUMN]
    if not np.array_equal(labels, np.round(labels)):
        raise InputError("distillation targets: column 0 must hold integer labels; received fractions")
    check_labels(labels.astype(np.int64), num_classes=num_classes, name="distillation targets' labels")
    if not np.isfinite(targets).all():
        raise InputError(f"distillation targets: expected finite teacher logits; received "
                         f"{int((~np.isfinite(targets)).sum())} NaN/inf values")
    return targets


def ridge_teacher(train: Split, test: Split, num_classes: int, penalty: float) -> tuple[np.ndarray, np.ndarray]:
    """Logits of a ridge-regression classifier on the pixels: least squares from [pixels, 1] to one-hot labels
    with an L2 ``penalty``, its outputs scaled by the one factor that gives the least cross-entropy on ``train``
    (temperature scaling), so they read as logits. (train logits, test logits)."""
    def design(split: Split) -> np.ndarray:
        x = split.images.reshape(len(split), -1).astype(np.float64)
        return np.concatenate([x, np.ones((len(split), 1))], axis=1)

    x = design(train)
    y = np.eye(num_classes)[train.labels]
    gram = x.T @ x + penalty * np.eye(x.shape[1])
    weights = np.linalg.solve(gram, x.T @ y)
    raw_train, raw_test = x @ weights, design(test) @ weights

    def cross_entropy(logits: np.ndarray) -> float:
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return float(-log_p[np.arange(len(train)), train.labels].mean())

    scale = min(np.geomspace(0.5, 200.0, 80), key=lambda s: cross_entropy(s * raw_train))
    return (scale * raw_train).astype(np.float32), (scale * raw_test).astype(np.float32)


def with_teacher(data: DistillationData, train_logits: np.ndarray, test_logits: np.ndarray, teacher: str,
                 weights: str | None = None) -> DistillationData:
    """``data`` with the teacher logits of both splits replaced (checked against the labels); ``teacher``
    describes the teacher, ``weights`` names its canonical weights file."""
    pack_targets(data.train.labels, train_logits)
    pack_targets(data.test.labels, test_logits)
    return DistillationData(dataclasses.replace(data.train, teacher_logits=np.asarray(train_logits, np.float32)),
                            dataclasses.replace(data.test, teacher_logits=np.asarray(test_logits, np.float32)),
                            data.class_names, teacher, weights)


def load(spec) -> DistillationData:
    """The task's data hook (``shared.data.load``): the classification data set ``spec.data`` names, with the
    ridge teacher's logits when ``spec.teacher == "ridge"`` (else none yet: the report attaches them)."""
    base = load_classification(spec.data)
    data = DistillationData(Split(base.train.images, base.train.labels), Split(base.test.images, base.test.labels),
                            base.class_names, spec.teacher)
    if spec.teacher != "ridge":
        return data
    train_logits, test_logits = ridge_teacher(data.train, data.test, spec.model.num_classes, spec.ridge)
    return with_teacher(data, train_logits, test_logits, "ridge")


def training_targets(split: Split, spec) -> np.ndarray:
    """The task's targets hook (``shared.data.training_targets``): labels and teacher logits, packed."""
    return split.targets


__all__ = ["DistillationData", "LABEL_COLUMN", "Split", "check_targets", "load", "pack_targets", "ridge_teacher",
           "training_targets", "with_teacher"]
