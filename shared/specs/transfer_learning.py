"""Specification of the transfer-learning twin (seed answers 3 and 18).

The source task is the classification task: its ResNet, trained on the generated shapes on textures, is the
pretrained backbone (read from that run's cache through ``body_from``, as a detector takes its body). A target
task from another domain gets a new ``fc`` head, and ``strategy`` says what trains:

* ``scratch``: nothing pretrained; the whole network from the seeded initialisation.
* ``frozen``: the pretrained backbone as a fixed feature extractor (BatchNorm statistics included); ``fc`` only.
* ``top``: the last stage and ``fc``; the stages below stay frozen.
* ``full``: every layer, starting from the pretrained weights.

A frozen layer's BatchNorm normalises with its running statistics in training too, in both twins (Keras'
rule for a non-trainable BatchNormalization; the PyTorch twin keeps such layers in eval mode).

Targets (all shipped with installed packages, nothing downloaded): ``digits`` (scikit-learn's handwritten
digits, 10 classes), ``faces`` (scikit-image's ``lfw_subset``: 100 faces against 100 non-faces), ``textures``
(crops of five scikit-image photographs none of which the source task's backgrounds use: moon, coins, cell, page,
text; the crop's source is its class).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .base import ParityTolerances, TrainSpec, check_choice, check_range
from .classification import ResNetSpec

STRATEGIES = ("scratch", "frozen", "top", "full")
TARGETS = ("digits", "faces", "textures")
TARGET_CLASSES = {"digits": 10, "faces": 2, "textures": 5}
TEXTURE_SOURCES = ("moon", "coins", "cell", "page", "text")


@dataclass(frozen=True)
class TransferDataSpec:
    """The target data set. samples_per_class: training images per class (0: all there are); test_fraction: the
    share of each class held out for testing (before the training subset is drawn, so every size is scored on
    the same images); textures_per_class: crops drawn per texture class (the textures set only)."""

    target: str = "digits"
    image_size: int = 32
    samples_per_class: int = 0
    test_fraction: float = 0.3
    textures_per_class: int = 240
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("data", "target", self.target, TARGETS)
        check_range("data", "image_size", self.image_size, 8, 1024, integer=True)
        check_range("data", "samples_per_class", self.samples_per_class, 0, 1_000_000, integer=True)
        check_range("data", "test_fraction", self.test_fraction, 0.05, 0.9)
        check_range("data", "textures_per_class", self.textures_per_class, 4, 100_000, integer=True)
        check_range("data", "seed", self.seed, 0, 2**31 - 1, integer=True)


@dataclass(frozen=True)
class TransferSpec:
    """model: the source task's network with the target's class count; strategy: what trains (module
    docstring); source: the run whose trained model gives the pretrained weights."""

    model: ResNetSpec = field(default_factory=ResNetSpec)
    data: TransferDataSpec = field(default_factory=TransferDataSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    strategy: str = "top"
    source: str = "classification"
    tolerances: ParityTolerances = field(default_factory=ParityTolerances)
    task: str = "transfer_learning"
    output_keys: tuple[str, ...] = ("logits",)
    # What the pretrained weights cover: everything but the head (``fc``), which the target replaces.
    body_keys: tuple[str, ...] = ("conv1.", "bn1.", "layer")

    def __post_init__(self) -> None:
        check_choice("transfer_learning", "task", self.task, ("transfer_learning",))
        check_choice("transfer_learning", "strategy", self.strategy, STRATEGIES)
        check_choice("transfer_learning", "source", self.source, ("classification",))

    @property
    def body_from(self) -> str | None:
        """The run whose trained body this one starts from (compare.stages.train.Initialisation); none from scratch."""
        return None if self.strategy == "scratch" else self.source

    @property
    def trainable(self) -> tuple[str, ...]:
        """Prefixes of the canonical names that train: ("",) is every parameter."""
        last = f"layer{len(self.model.depths)}"
        return {"frozen": ("fc",), "top": (last, "fc")}.get(self.strategy, ("",))

    def check_data_matches(self) -> None:
        """Raise unless the head's class count fits the target (checked before training)."""
        n = TARGET_CLASSES[self.data.target]
        if self.model.num_classes != n:
            raise ValueError(f"model.num_classes: the {self.data.target!r} target has {n} classes; "
                             f"received: {self.model.num_classes}")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        s = self.data.image_size
        return (s, s, self.model.in_channels)


def tiny() -> TransferSpec:
    """The tiny classifier's network (16 px, 8/16 channels) moved to the textures target, top stage fine-tuned."""
    return TransferSpec(
        model=ResNetSpec(depths=(1, 1), widths=(8, 16), stem="small", stem_width=8, num_classes=5),
        data=TransferDataSpec(target="textures", image_size=16, textures_per_class=60),
        train=TrainSpec(epochs=10, batch_size=32, lr=0.05),
        strategy="full",
    )


def standard() -> TransferSpec:
    """The report's model: the classification ResNet (shapes on textures, 32 px) moved to the real digits, its
    top stage and a new head fine-tuned on every training digit."""
    return TransferSpec(
        model=ResNetSpec(depths=(1, 1, 1, 1), widths=(16, 32, 64, 128), stem="small", stem_width=16,
                         num_classes=10),
        data=TransferDataSpec(target="digits", image_size=32),
        train=TrainSpec(epochs=6, batch_size=32, lr=0.05),
        strategy="top",
    )


__all__ = ["STRATEGIES", "TARGETS", "TARGET_CLASSES", "TEXTURE_SOURCES", "TransferDataSpec", "TransferSpec",
           "standard", "tiny"]
