"""The classification data sets: scikit-learn's real digits, and shapes drawn on real textures (seeded)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..specs.classification import SHAPE_CLASSES, ClassificationDataSpec
from .digits import digit_images
from .shapes import render_shape_image
from .validate import InputError


@dataclass(frozen=True)
class Split:
    """images: [N, H, W, C] float32 in [0, 1]; labels: [N] int64."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def targets(self) -> np.ndarray:
        """What the task's loss takes besides the outputs (every task's Split has this name)."""
        return self.labels


@dataclass(frozen=True)
class ClassificationData:
    train: Split
    test: Split
    class_names: tuple[str, ...]


_SPLIT_CODES = {"train": 0, "test": 1, "val": 2}


def load_classification(spec: ClassificationDataSpec) -> ClassificationData:
    """The train and test splits of the data set ``spec`` names, identical on every call."""
    if spec.dataset == "digits":
        images, labels = digit_images(spec.image_size)
        if spec.n_train + spec.n_test > len(labels):
            raise InputError(f"data.n_train + data.n_test: the digits set has {len(labels)} images; "
                             f"received {spec.n_train} + {spec.n_test}")
        order = np.random.default_rng(spec.seed).permutation(len(labels))
        tr, te = order[:spec.n_train], order[spec.n_train:spec.n_train + spec.n_test]
        return ClassificationData(Split(images[tr].copy(), labels[tr]), Split(images[te].copy(), labels[te]),
                                  tuple(str(i) for i in range(10)))
    return ClassificationData(_shapes_split(spec, "train", spec.n_train), _shapes_split(spec, "test", spec.n_test),
                              SHAPE_CLASSES)


def _shapes_split(spec: ClassificationDataSpec, split: str, n: int) -> Split:
    labels = np.arange(n, dtype=np.int64) % len(SHAPE_CLASSES)       # balanced classes
    np.random.default_rng((spec.seed, _SPLIT_CODES[split], 1)).shuffle(labels)
    images = np.stack([
        # One generator per image: image i is the same whatever n is.
        render_shape_image(np.random.default_rng((spec.seed, _SPLIT_CODES[split], 0, i)), spec.image_size, int(y))
        for i, y in enumerate(labels)])
    return Split(images, labels)


def load(spec) -> ClassificationData:
    """The task's data hook (``shared.data.load``): the data set ``spec.data`` names."""
    return load_classification(spec.data)


def training_targets(split: Split, spec) -> np.ndarray:
    """The task's targets hook (``shared.data.training_targets``): the labels."""
    return np.asarray(split.targets)
