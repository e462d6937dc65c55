"""Seeded, deterministic data, NHWC float32 in [0, 1]: the same arrays for both twins."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..specs.classification import DATASET_CLASSES, SHAPE_CLASSES, ClassificationDataSpec
from .detection import DetectionData, DetectionSplit, load_detection, pack_targets
from .digits import digit_images
from .shapes import render_shape_image, shape_mask
from .validate import InputError, check_calibration, check_images, check_labels


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


def load(spec):
    """The data of any task spec (dispatch on ``spec.task``): an object with ``train`` and ``test`` splits."""
    loaders = {"classification": lambda: load_classification(spec.data),
               "detection": lambda: load_detection(spec.data)}
    if spec.task not in loaders:
        raise ValueError(f"no data loader for task {spec.task!r}; expected one of {sorted(loaders)}")
    return loaders[spec.task]()


def training_targets(split, spec) -> np.ndarray:
    """A split's targets as one array that batch index arrays can slice: labels, or packed boxes (detection)."""
    if spec.task == "detection":
        return pack_targets(split.targets, spec.data.num_classes)
    return np.asarray(split.targets)


def batch_plan(n: int, batch_size: int, epochs: int, seed: int) -> list[list[np.ndarray]]:
    """Per epoch, the index arrays of its batches: a seeded shuffle, the last batch partial.

    Both twins' training loops consume this plan, so they see the same
    batches in the same order.
    """
    plan = []
    for epoch in range(epochs):
        order = np.random.default_rng((seed, epoch)).permutation(n)
        plan.append([order[i:i + batch_size] for i in range(0, n, batch_size)])
    return plan


__all__ = ["ClassificationData", "DATASET_CLASSES", "DetectionData", "DetectionSplit", "InputError", "Split", "batch_plan",
           "check_calibration", "check_images", "check_labels", "load", "load_classification", "load_detection",
           "pack_targets", "render_shape_image", "shape_mask", "training_targets"]
