"""Specification of the classification / feature-extraction twin (seed answers 1, 2, 16).

One ResNet-style family covers the tiny test net, the report's trained model
and exact ports of torchvision's ResNet-18 and ResNet-50: attribute names are
torchvision's (``conv1``, ``bn1``, ``layer1.0.conv2``, ``fc``), so their
``state_dict`` is the canonical weight layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .base import ParityTolerances, TrainSpec, check_choice, check_int_tuple, check_range

POOL_KINDS = ("max", "avg", "l2")
BLOCKS = ("basic", "bottleneck")
STEMS = ("imagenet", "small")
DATASETS = ("digits", "shapes")
# The shape classes of the generated data set (shared.data.shapes draws them).
SHAPE_CLASSES = ("circle", "square", "triangle", "cross", "ring", "star")
DATASET_CLASSES = {"digits": 10, "shapes": len(SHAPE_CLASSES)}


@dataclass(frozen=True)
class ResNetSpec:
    """A ResNet-style network.

    stem: ``imagenet`` is torchvision's 7x7/2 conv then a 3x3/2 pool;
        ``small`` is a 3x3/1 conv and no pool, for 16-64 px inputs.
    stem_pool: the stem's downsampling pool (imagenet stem only): max, avg,
        or l2 (power-average with p=2, torch's LPPool2d semantics).
    head_pool: the global pool before the classifier, same three kinds.
    bn_momentum: PyTorch convention (weight of the new batch statistic);
        Keras' own momentum is ``1 - bn_momentum``.
    """

    block: str = "basic"
    depths: tuple[int, ...] = (2, 2, 2, 2)
    widths: tuple[int, ...] = (64, 128, 256, 512)
    stem: str = "imagenet"
    stem_width: int = 64
    stem_pool: str = "max"
    head_pool: str = "avg"
    in_channels: int = 3
    num_classes: int = 1000
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1

    def __post_init__(self) -> None:
        check_choice("model", "block", self.block, BLOCKS)
        check_int_tuple("model", "depths", self.depths, 1, 64)
        check_int_tuple("model", "widths", self.widths, 1, 4096, length=len(self.depths))
        check_choice("model", "stem", self.stem, STEMS)
        check_range("model", "stem_width", self.stem_width, 1, 4096, integer=True)
        check_choice("model", "stem_pool", self.stem_pool, POOL_KINDS)
        check_choice("model", "head_pool", self.head_pool, POOL_KINDS)
        check_range("model", "in_channels", self.in_channels, 1, 64, integer=True)
        check_range("model", "num_classes", self.num_classes, 2, 100_000, integer=True)
        check_range("model", "bn_eps", self.bn_eps, 1e-12, 1e-1)
        check_range("model", "bn_momentum", self.bn_momentum, 0.0, 1.0)

    @property
    def expansion(self) -> int:
        return 4 if self.block == "bottleneck" else 1

    @property
    def feature_dim(self) -> int:
        """Channels of the last stage, the input of ``fc``."""
        return self.widths[-1] * self.expansion


@dataclass(frozen=True)
class ClassificationDataSpec:
    """Which offline data set, at which size.

    digits: scikit-learn's 1797 real handwritten digits, upscaled, 3 channels.
    shapes: generated shapes drawn on real scikit-image textures (6 classes).
    """

    dataset: str = "shapes"
    image_size: int = 32
    n_train: int = 2048
    n_test: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("data", "dataset", self.dataset, DATASETS)
        check_range("data", "image_size", self.image_size, 8, 1024, integer=True)
        check_range("data", "n_train", self.n_train, 2, 1_000_000, integer=True)
        check_range("data", "n_test", self.n_test, 2, 1_000_000, integer=True)
        check_range("data", "seed", self.seed, 0, 2**31 - 1, integer=True)


@dataclass(frozen=True)
class ClassificationSpec:
    model: ResNetSpec = field(default_factory=ResNetSpec)
    data: ClassificationDataSpec = field(default_factory=ClassificationDataSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    tolerances: ParityTolerances = field(default_factory=ParityTolerances)
    task: str = "classification"
    output_keys: tuple[str, ...] = ("logits",)

    def __post_init__(self) -> None:
        check_choice("classification", "task", self.task, ("classification",))

    def check_data_matches(self) -> None:
        """Raise unless the model's class count fits the chosen data set (checked before training)."""
        n = DATASET_CLASSES[self.data.dataset]
        if self.model.num_classes != n:
            raise ValueError(f"model.num_classes: the {self.data.dataset!r} data set has {n} classes; "
                             f"received: {self.model.num_classes}")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one NHWC image."""
        s = self.data.image_size
        return (s, s, self.model.in_channels)




def tiny() -> ClassificationSpec:
    """Seconds-scale net for parity tests and the quick report: 2 stages, 8/16 channels, 16 px digits."""
    return ClassificationSpec(
        model=ResNetSpec(depths=(1, 1), widths=(8, 16), stem="small", stem_width=8, num_classes=10),
        # Enough steps (6 epochs x 32 batches) for a few seconds of training to learn the digits.
        data=ClassificationDataSpec(dataset="digits", image_size=16, n_train=1024, n_test=256),
        train=TrainSpec(epochs=6, batch_size=32, lr=0.05),
    )


def standard() -> ClassificationSpec:
    """The report's model: a small 4-stage ResNet (ResNet's own stage count) on 32 px shapes-on-textures.

    The 4th stage runs at 4x4 px, so it adds 3/4 of the ~300K parameters but
    little compute; with 3 stages (80K parameters) fixed per-op overhead kept
    ONNX int8 files above 0.3x their fp32 source, unlike real-sized networks.
    """
    return ClassificationSpec(
        model=ResNetSpec(depths=(1, 1, 1, 1), widths=(16, 32, 64, 128), stem="small", stem_width=16,
                         num_classes=len(SHAPE_CLASSES)),
        data=ClassificationDataSpec(dataset="shapes", image_size=32, n_train=4000, n_test=800),
        # About a minute of training per framework on 2 cores; 0.92 test accuracy measured (torch).
        train=TrainSpec(epochs=15, batch_size=64, lr=0.1),
    )


def resnet18(num_classes: int = 1000, image_size: int = 224) -> ClassificationSpec:
    """torchvision's ResNet-18, names and shapes included."""
    return _torchvision(ResNetSpec(block="basic", depths=(2, 2, 2, 2), num_classes=num_classes), image_size)


def resnet50(num_classes: int = 1000, image_size: int = 224) -> ClassificationSpec:
    """torchvision's ResNet-50 (v1.5: stride on the 3x3 conv), names and shapes included."""
    return _torchvision(ResNetSpec(block="bottleneck", depths=(3, 4, 6, 3), num_classes=num_classes), image_size)


def _torchvision(model: ResNetSpec, image_size: int) -> ClassificationSpec:
    # Deep nets accumulate more float32 rounding: docs/ARCHITECTURE.md allows 1e-4 x for them.
    return ClassificationSpec(model=model, data=ClassificationDataSpec(image_size=image_size),
                              tolerances=ParityTolerances(forward=1e-4))
