"""Validation helpers and the parts every task spec is built from.

Specs are frozen dataclasses: a spec is a value, hashed into cache keys and
compared across processes, so nothing may mutate it after construction. Every
field is checked in ``__post_init__`` and a bad value fails there, naming the
field, the value and what was allowed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Iterable


class SpecError(ValueError):
    """A spec field holds a value outside what the task supports."""


def check_range(owner: str, field: str, value: Any, lo: float, hi: float, *, integer: bool = False) -> None:
    """Raise SpecError unless ``lo <= value <= hi`` (and an int when ``integer``)."""
    kind = "an integer" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or (isinstance(value, float) and math.isnan(value)):
        raise SpecError(f"{owner}.{field}: expected {kind} in [{lo}, {hi}]; received: {value!r}")
    if not lo <= value <= hi:
        raise SpecError(f"{owner}.{field}: expected {kind} in [{lo}, {hi}]; received: {value!r}")


def check_choice(owner: str, field: str, value: Any, choices: Iterable[Any]) -> None:
    """Raise SpecError unless ``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise SpecError(f"{owner}.{field}: expected one of {list(choices)}; received: {value!r}")


def check_int_tuple(owner: str, field: str, value: Any, lo: int, hi: int, *, length: int | None = None) -> None:
    """Raise SpecError unless ``value`` is a non-empty tuple of ints in [lo, hi]."""
    if not isinstance(value, tuple) or not value:
        raise SpecError(f"{owner}.{field}: expected a non-empty tuple of integers; received: {value!r}")
    if length is not None and len(value) != length:
        raise SpecError(f"{owner}.{field}: expected {length} entries; received {len(value)}: {value!r}")
    for i, v in enumerate(value):
        check_range(owner, f"{field}[{i}]", v, lo, hi, integer=True)


def spec_to_dict(spec: Any) -> dict:
    """A JSON-ready dict of a (nested) spec dataclass."""
    return dataclasses.asdict(spec)


def spec_key(spec: Any) -> str:
    """A short stable hash of a spec's values (cache keys, result provenance)."""
    blob = json.dumps(spec_to_dict(spec), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


SCHEDULES = ("constant", "cosine")


def lr_factor(schedule: str, step: int, total_steps: int) -> float:
    """Learning-rate multiplier at 0-based ``step``: the one formula both twins' schedules use.

    cosine: 0.5 * (1 + cos(pi * step / total_steps)), from 1 down to 0 at the last step.
    """
    if schedule == "constant":
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))


@dataclass(frozen=True)
class TrainSpec:
    """Optimisation settings shared by every task's training twins.

    ``weight_decay`` is coupled (added to the gradient, as torch.optim.SGD does)
    and applies to conv and dense kernels only, never to BatchNorm parameters
    or biases; the TensorFlow twin implements exactly that rather than Keras 3's
    decoupled decay over every variable. ``schedule`` is applied per step
    (``lr_factor``); momentum is torch's form in both twins, so the two stay
    equal while the rate changes.
    """

    optimizer: str = "sgd"
    lr: float = 0.05
    schedule: str = "cosine"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    epochs: int = 5
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("train", "optimizer", self.optimizer, ("sgd", "adam"))
        check_range("train", "lr", self.lr, 1e-8, 10.0)
        check_choice("train", "schedule", self.schedule, SCHEDULES)
        check_range("train", "momentum", self.momentum, 0.0, 0.999)
        check_range("train", "weight_decay", self.weight_decay, 0.0, 0.1)
        check_range("train", "epochs", self.epochs, 1, 1000, integer=True)
        check_range("train", "batch_size", self.batch_size, 1, 4096, integer=True)
        check_range("train", "seed", self.seed, 0, 2**31 - 1, integer=True)


@dataclass(frozen=True)
class ParityTolerances:
    """Relative tolerances of the parity levels (docs/ARCHITECTURE.md, 'Parity levels').

    Each is multiplied by the reference output's (or tensor's) max |value|.
    """

    forward: float = 1e-5
    gradients: float = 1e-4
    training_loss: float = 1e-5
    training_weights: float = 1e-3
    onnx: float = 1e-5
    training_steps: int = 20
    training_lr: float = 0.01
    # L3 draws its batches from the first N training samples. Over long trajectories a batch
    # that puts activations on a ReLU kink amplifies rounding in *either* framework: on the
    # tiny digits set, batches from 1024 samples made torch fp32 drift 6.5e-6 from torch
    # fp64 by step 19, on the order of the tolerance itself. 256 samples keep the probe on
    # the update rules (measured twin difference there: 2.4e-7 of the loss).
    training_samples: int = 256
    # L2's batch (at most run_parity's): the images whose loss gradients are compared. A dense-output model has
    # ReLU inputs on every pixel, and with more of them every initialisation puts some within rounding of the
    # kink (compare/parity.py: KINK_MARGIN); the segmenters compare 2 images of 32 px.
    gradient_images: int = 8
    # Mixed precision against float32 (shared/precision.py), both twins. Outputs and the loss: within this
    # many unit roundoffs of the format (2^-8 for bfloat16, 2^-11 for float16); measured on the tiny
    # classifier, trained and untrained, with oneDNN's AVX-512 kernels and with the AVX2 / Eigen paths: at most
    # 2.6 (bfloat16) and 1.8 (float16) roundoffs, and the same between the twins at one precision.
    mixed_roundoffs: float = 8.0
    # Gradients, relative to the largest float32 gradient of the model: each layer's backward pass rounds
    # again, and CPU float16 kernels accumulate in float16. Measured there: at most 0.084 (bfloat16) and
    # 0.048 (float16) against float32, 0.10 and 0.025 between the twins.
    bfloat16_gradients: float = 0.25
    float16_gradients: float = 0.15

    def __post_init__(self) -> None:
        for name in ("forward", "gradients", "training_loss", "training_weights", "onnx", "bfloat16_gradients",
                     "float16_gradients"):
            check_range("tolerances", name, getattr(self, name), 0.0, 1.0)
        check_range("tolerances", "training_steps", self.training_steps, 1, 1000, integer=True)
        check_range("tolerances", "training_lr", self.training_lr, 1e-8, 1.0)
        check_range("tolerances", "training_samples", self.training_samples, 1, 1_000_000, integer=True)
        check_range("tolerances", "gradient_images", self.gradient_images, 1, 4096, integer=True)
        check_range("tolerances", "mixed_roundoffs", self.mixed_roundoffs, 1.0, 1e4)
