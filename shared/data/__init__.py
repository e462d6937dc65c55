"""Seeded, deterministic data, NHWC float32 in [0, 1]: the same arrays for both twins."""

from __future__ import annotations

import importlib

import numpy as np

from ..specs.classification import DATASET_CLASSES
from .classification import ClassificationData, Split, load_classification
from .detection import DetectionData, DetectionSplit, load_detection, pack_targets
from .shapes import render_shape_image, shape_mask
from .validate import InputError, check_calibration, check_images, check_labels


def data_module(task: str):
    """The data module of ``task``: ``shared.data.<task>``, which every task provides with ``load(spec)`` (an
    object with ``train`` and ``test`` splits, NHWC float32 images) and ``training_targets(split, spec)``.
    A task plugs in by adding that module; nothing here names a task."""
    try:
        return importlib.import_module(f"{__name__}.{task}")
    except ModuleNotFoundError as err:
        if err.name != f"{__name__}.{task}":
            raise
        raise ValueError(f"no data module for task {task!r} (expected shared/data/{task}.py with load and "
                         f"training_targets)") from None


def load(spec):
    """The data of any task spec: an object with ``train`` and ``test`` splits (the task's own ``load``)."""
    return data_module(spec.task).load(spec)


def training_targets(split, spec) -> np.ndarray:
    """A split's targets as one array that batch index arrays can slice (labels; packed boxes for detection)."""
    return data_module(spec.task).training_targets(split, spec)


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
           "pack_targets", "render_shape_image", "shape_mask", "data_module", "training_targets"]
