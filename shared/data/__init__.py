"""Seeded, deterministic data, NHWC float32 in [0, 1]: the same arrays for both twins."""

from __future__ import annotations

import numpy as np

from .. import task_module

from .shapes import render_shape_image, shape_mask
from .validate import InputError, check_calibration, check_images, check_labels


def data_module(task: str):
    """The data module of ``task``: ``shared.data.<task>``, which every task provides with ``load(spec)`` (an
    object with ``train`` and ``test`` splits, NHWC float32 images) and ``training_targets(split, spec)``.
    A task plugs in by adding that module; nothing here names a task."""
    return task_module(__name__, task, "load and training_targets")


def load(spec):
    """The data of any task spec: an object with ``train`` and ``test`` splits (the task's own ``load``)."""
    return data_module(spec.task).load(spec)


def training_targets(split, spec) -> np.ndarray:
    """A split's targets as one array that batch index arrays can slice (the task's ``training_targets``)."""
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


def full_batches(n: int, batch_size: int, epochs: int, seed: int) -> list[np.ndarray]:
    """The full batches of ``batch_plan``, epoch after epoch: what a data-parallel job splits over its workers
    (a partial last batch would not split evenly)."""
    return [b for epoch in batch_plan(n, batch_size, epochs, seed) for b in epoch if len(b) == batch_size]


def shard(batch: np.ndarray, rank: int, world: int) -> np.ndarray:
    """Worker ``rank``'s part of one global batch (index array) of a ``world``-worker job: contiguous slices
    of equal size, so that the workers together see the batch one process sees."""
    if len(batch) % world:
        raise ValueError(f"a global batch of {len(batch)} images does not split over {world} workers; expected a "
                         f"multiple of {world}")
    size = len(batch) // world
    return batch[rank * size:(rank + 1) * size]


__all__ = ["InputError", "batch_plan", "full_batches", "shard", "check_calibration", "check_images", "check_labels", "data_module", "load",
           "render_shape_image", "shape_mask", "training_targets"]
