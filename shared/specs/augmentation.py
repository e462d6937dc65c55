"""Specification of the data-augmentation twin (seed answer 4).

Each op is the framework's own library: torchvision.transforms.v2 on the PyTorch side, Keras 3 preprocessing
layers on the TensorFlow side, never hand-written. The ranges below are one definition for both, in each
library's own terms:

* flip: a horizontal flip with probability 1/2 (v2.RandomHorizontalFlip; keras RandomFlip("horizontal")).
* rotation: an angle uniform in [-rotation, rotation] degrees, bilinear, zero fill (v2.RandomRotation;
  keras RandomRotation, whose factor is a fraction of a full turn).
* scale_crop: a square crop of ``crop_fraction`` of the side at a uniform position, resized back bilinearly
  (v2.RandomResizedCrop at that one scale and ratio 1; keras RandomCrop then Resizing).
* translation: a shift uniform in [-translation, translation] of the side on each axis, bilinear, zero fill
  (v2.RandomAffine, which rounds the shift to whole pixels; keras RandomTranslation, which does not).
* noise: additive Gaussian noise of standard deviation ``noise`` (v2.GaussianNoise clips to [0, 1]; keras
  GaussianNoise does not).
* color: brightness, contrast and saturation jitter of strength ``jitter`` (v2.ColorJitter: multiplicative
  brightness, contrast around the grey mean, saturation by blending with grey, in a random order; keras
  RandomColorJitter: additive brightness, contrast around each channel's mean, saturation in HSV, in a fixed
  order: the libraries' ops really differ, the op-parity study measures by how much).
* erasing: with probability ``erasing`` a rectangle of 2% to 20% of the image set to 0 (v2.RandomErasing;
  keras RandomErasing).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .base import ParityTolerances, TrainSpec, check_choice, check_range
from .classification import DATASET_CLASSES, SHAPE_CLASSES, ClassificationDataSpec, ResNetSpec

# The ablation's groups, each a switch of AugmentSpec.ops, in the order a pipeline applies them.
OPS = ("flip", "rotation", "scale_crop", "translation", "color", "noise", "erasing")
# The single transforms the op-parity study compares with fixed parameters (color's three apart).
PARITY_OPS = ("flip", "rotation", "scale_crop", "translation", "noise", "brightness", "contrast", "saturation",
              "erasing")
# Ops whose two libraries compute the same function of the same parameters (PARITY_OPS less DIFFERENT_OPS): the
# largest difference allowed, in the images' range [0, 1] (measured at most 4.0e-6: rotation's bilinear weights
# in float32; flip and erasing are exact, the crop and the shift 1e-7 to 4e-7).
SAME_OP_TOLERANCE = 1e-5
# Ops whose libraries compute different functions: what differs (the study reports by how much).
DIFFERENT_OPS = {
    "noise": "torchvision clips the noisy image to [0, 1], Keras' GaussianNoise does not",
    "brightness": "torchvision multiplies by the factor, Keras adds a delta (RandomBrightness)",
    "contrast": "torchvision blends with the image's grey mean, Keras with each channel's own mean",
    "saturation": "torchvision blends with the grey image (ITU-R 601 weights), Keras scales the HSV saturation",
}


@dataclass(frozen=True)
class AugmentSpec:
    """ops: the switched-on groups of OPS, in OPS order (empty: no augmentation); the rest: their ranges."""

    ops: tuple[str, ...] = OPS
    rotation: float = 15.0
    crop_fraction: float = 0.8125
    translation: float = 0.1
    noise: float = 0.05
    jitter: float = 0.3
    erasing: float = 0.5

    def __post_init__(self) -> None:
        for op in self.ops:
            check_choice("augment", "ops", op, OPS)
        if tuple(o for o in OPS if o in self.ops) != self.ops:
            raise ValueError(f"augment.ops: expected a subset of {list(OPS)} in that order; received {self.ops}")
        check_range("augment", "rotation", self.rotation, 0.0, 180.0)
        check_range("augment", "crop_fraction", self.crop_fraction, 0.1, 1.0)
        check_range("augment", "translation", self.translation, 0.0, 0.5)
        check_range("augment", "noise", self.noise, 0.0, 1.0)
        check_range("augment", "jitter", self.jitter, 0.0, 0.9)
        check_range("augment", "erasing", self.erasing, 0.0, 1.0)

    def crop_size(self, image_size: int) -> int:
        """The scale_crop's side in pixels (what v2.RandomResizedCrop computes from the area and ratio 1)."""
        return int(round(self.crop_fraction * image_size))

    @property
    def saturation_factor(self) -> tuple[float, float]:
        """Keras RandomSaturation's factor for torchvision's [1 - jitter, 1 + jitter]: Keras maps its u in [0, 1] to
        the multiplier u / (1 - u), so u = k / (1 + k)."""
        lo, hi = 1.0 - self.jitter, 1.0 + self.jitter
        return (lo / (1.0 + lo), hi / (1.0 + hi))


@dataclass(frozen=True)
class AugmentationSpec:
    model: ResNetSpec = field(default_factory=ResNetSpec)
    data: ClassificationDataSpec = field(default_factory=ClassificationDataSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    augment: AugmentSpec = field(default_factory=AugmentSpec)
    tolerances: ParityTolerances = field(default_factory=ParityTolerances)
    task: str = "augmentation"
    output_keys: tuple[str, ...] = ("logits",)

    def __post_init__(self) -> None:
        check_choice("augmentation", "task", self.task, ("augmentation",))

    def check_data_matches(self) -> None:
        n = DATASET_CLASSES[self.data.dataset]
        if self.model.num_classes != n:
            raise ValueError(f"model.num_classes: the {self.data.dataset!r} data set has {n} classes; "
                             f"received: {self.model.num_classes}")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        s = self.data.image_size
        return (s, s, self.model.in_channels)


def tiny() -> AugmentationSpec:
    """The tiny classifier on 512 of the digits, milder ranges for its 16 px, no flip (a mirrored digit is
    another symbol, or none)."""
    return AugmentationSpec(
        model=ResNetSpec(depths=(1, 1), widths=(8, 16), stem="small", stem_width=8, num_classes=10),
        data=ClassificationDataSpec(dataset="digits", image_size=16, n_train=512, n_test=256),
        train=TrainSpec(epochs=6, batch_size=32, lr=0.05),
        augment=AugmentSpec(ops=OPS[1:], rotation=10.0, crop_fraction=0.875, translation=0.05, noise=0.03,
                            jitter=0.2, erasing=0.25),
    )


def standard() -> AugmentationSpec:
    """The classification model on a quarter of its training images (1000: augmentation matters where data is
    short), every op on; the ablation switches them one by one."""
    return AugmentationSpec(
        model=ResNetSpec(depths=(1, 1, 1, 1), widths=(16, 32, 64, 128), stem="small", stem_width=16,
                         num_classes=len(SHAPE_CLASSES)),
        data=ClassificationDataSpec(dataset="shapes", image_size=32, n_train=1000, n_test=800),
        train=TrainSpec(epochs=15, batch_size=64, lr=0.1),
    )


__all__ = ["AugmentSpec", "AugmentationSpec", "DIFFERENT_OPS", "OPS", "PARITY_OPS", "SAME_OP_TOLERANCE",
           "standard", "tiny"]
