"""Loading the twins of a task, in the one import order that does not crash.

``tensorflow_impl`` loads triton before TensorFlow (see its ``__init__``); it
is imported here before anything that could pull torch's compiler stack in.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

import tensorflow_impl  # noqa: F401  (import-order guard: first)
import pytorch_impl  # noqa: F401

from shared.specs import FRAMEWORKS, TASKS, check_framework, check_task

PACKAGES = {"torch": "pytorch_impl", "tensorflow": "tensorflow_impl"}


@dataclass(frozen=True)
class Twin:
    """One framework's side of a task: the task module and the framework's shared modules."""

    framework: str
    task: ModuleType      # build_model, compute_loss, predict, train, evaluate, train_steps
    bridge: ModuleType    # export_weights, import_weights, save_weights, load_weights
    export: ModuleType    # export_onnx
    training: ModuleType  # Trainer, make_optimizer
    tensors: ModuleType   # to_native, to_numpy, resolve_device
    precision: ModuleType  # build_model, forward, loss_and_gradients at float32, bfloat16 or float16


def load_twin(framework: str, task: str, *, allow_planned: bool = False) -> Twin:
    """One framework's twin of ``task``; ``allow_planned`` also loads a task whose registry status is not
    yet ``ready`` (its twins exist but the report does not run it): the parity tests of a task in progress.
    A study-only task (``TaskEntry.studies_on``) gets the twins of the task it studies."""
    check_framework(framework)
    if not (allow_planned and task in TASKS):
        check_task(task)
    pkg = PACKAGES[framework]
    mod = lambda name: importlib.import_module(f"{pkg}.{name}")  # noqa: E731
    return Twin(framework, mod(TASKS[task].studies_on or task), mod("bridge"), mod("export"), mod("training"), mod("tensors"),
                mod("precision"))


def load_twins(task: str, *, allow_planned: bool = False) -> dict[str, Twin]:
    return {fw: load_twin(fw, task, allow_planned=allow_planned) for fw in FRAMEWORKS}
