"""Specification of the knowledge-distillation twin (seed answers 10 and 27).

A small student ResNet learns from a teacher's softened outputs as well as from the labels. The loss, in both
twins:

    loss = alpha * CE(student, labels) + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T))

(Hinton et al.'s form: the T^2 keeps the soft term's gradients on the scale of the hard one's as T grows.)

The teacher is frozen and the images are not augmented, so its logits are the same at every epoch: they are
computed once and travel with the labels as the task's targets (offline distillation; the same loss as calling
the teacher in every step, for a fraction of the time). Where they come from is the spec's ``teacher``:

* ``classification``: the classification task's trained ResNet at the same preset (the report's own model,
  about 10x the student's parameters). The report attaches its logits (compare/tasks/distillation.py): the
  reference framework's teacher for both students, so the two students learn from the same targets.
* ``ridge``: a closed-form ridge-regression classifier on the pixels, computed with the data in numpy: real soft
  targets (confident where the classes separate linearly, not elsewhere) without training a network, for the
  tiny preset's tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .base import ParityTolerances, TrainSpec, check_choice, check_range
from .classification import DATASET_CLASSES, SHAPE_CLASSES, ClassificationDataSpec, ResNetSpec

TEACHERS = ("classification", "ridge")


@dataclass(frozen=True)
class DistillationLossSpec:
    """alpha: weight of the hard-label cross-entropy (1 - alpha goes to the soft term); temperature: T > 0
    divides both models' logits before the softmax (T = 1: the plain distributions)."""

    alpha: float = 0.1
    temperature: float = 4.0

    def __post_init__(self) -> None:
        check_range("distill", "alpha", self.alpha, 0.0, 1.0)
        check_range("distill", "temperature", self.temperature, 0.05, 100.0)


@dataclass(frozen=True)
class DistillationSpec:
    """model: the student (the model the task trains, exports and serves); teacher: where the soft targets come
    from (module docstring); ridge: the ridge teacher's L2 penalty (pixels scaled to [0, 1])."""

    model: ResNetSpec = field(default_factory=ResNetSpec)
    data: ClassificationDataSpec = field(default_factory=ClassificationDataSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    distill: DistillationLossSpec = field(default_factory=DistillationLossSpec)
    teacher: str = "classification"
    ridge: float = 10.0
    tolerances: ParityTolerances = field(default_factory=ParityTolerances)
    task: str = "distillation"
    output_keys: tuple[str, ...] = ("logits",)

    def __post_init__(self) -> None:
        check_choice("distillation", "task", self.task, ("distillation",))
        check_choice("distillation", "teacher", self.teacher, TEACHERS)
        check_range("distillation", "ridge", self.ridge, 1e-6, 1e6)

    def check_data_matches(self) -> None:
        """Raise unless the student's class count fits the chosen data set (checked before training)."""
        n = DATASET_CLASSES[self.data.dataset]
        if self.model.num_classes != n:
            raise ValueError(f"model.num_classes: the {self.data.dataset!r} data set has {n} classes; "
                             f"received: {self.model.num_classes}")

    @property
    def depends_on(self) -> tuple[str, ...]:
        """The runs whose trained models this one's data uses (its cache key follows their specs)."""
        return ("classification",) if self.teacher == "classification" else ()

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one NHWC image."""
        s = self.data.image_size
        return (s, s, self.model.in_channels)


def tiny() -> DistillationSpec:
    """Seconds-scale: the tiny classifier's data (16 px digits), a 4/8-channel student, the ridge teacher (test
    accuracy 0.91), alpha 0.5 (the soft targets of a linear teacher are worth less than a network's)."""
    return DistillationSpec(
        model=ResNetSpec(depths=(1, 1), widths=(4, 8), stem="small", stem_width=4, num_classes=10),
        data=ClassificationDataSpec(dataset="digits", image_size=16, n_train=1024, n_test=256),
        train=TrainSpec(epochs=6, batch_size=32, lr=0.05),
        distill=DistillationLossSpec(alpha=0.5, temperature=4.0),
        teacher="ridge",
    )


def standard() -> DistillationSpec:
    """The report's student: the classification model's four stages at 8/16/24/32 channels (31,550 parameters,
    9.8x fewer than the teacher's 308,310), on the classification task's data and recipe, distilled from its
    trained model at T = 4 with alpha = 0.1."""
    return DistillationSpec(
        model=ResNetSpec(depths=(1, 1, 1, 1), widths=(8, 16, 24, 32), stem="small", stem_width=8,
                         num_classes=len(SHAPE_CLASSES)),
        data=ClassificationDataSpec(dataset="shapes", image_size=32, n_train=4000, n_test=800),
        train=TrainSpec(epochs=15, batch_size=64, lr=0.1),
    )


__all__ = ["DistillationLossSpec", "DistillationSpec", "TEACHERS", "standard", "tiny"]
