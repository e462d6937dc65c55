"""The training machinery every TensorFlow twin uses: optimizer and loop.

Twin of ``pytorch_impl/training.py``, built on Keras' own ``compile``/``fit``.
Two numerics are matched on purpose:

* weight decay: Keras 3's ``weight_decay`` is decoupled (applied outside the
  momentum) and decays every variable, BatchNorm and biases included. torch's
  is an L2 term added to the gradient; the optimizers below add it the same
  way and to conv / dense kernels only, as ``pytorch_impl.training`` does.
* momentum: Keras keeps v = mu * v - lr * g, torch b = mu * b + g and steps
  by lr * b. Equal at a constant rate, not once a schedule changes the rate,
  so the SGD below keeps torch's form.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from shared.specs.base import TrainSpec

from . import bridge
from .tensors import resolve_device


class _CoupledWeightDecay:
    """Adds ``l2 * w`` to the gradient of every kernel (rank > 1) before the update, as torch does."""

    def __init__(self, *args, l2: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.l2 = l2

    def apply(self, grads, trainable_variables=None):
        variables = trainable_variables if trainable_variables is not None else self._trainable_variables
        if self.l2:
            grads = [g if g is None or len(v.shape) <= 1 else g + self.l2 * v for g, v in zip(grads, variables)]
        return super().apply(grads, trainable_variables)


class _SGD(_CoupledWeightDecay, keras.optimizers.SGD):
    def update_step(self, gradient, variable, learning_rate):
        if self.momentum == 0:
            return super().update_step(gradient, variable, learning_rate)
        # torch's momentum: a buffer of gradients, scaled by the *current* rate when applied.
        buf = self.momentums[self._get_variable_index(variable)]
        self.assign(buf, buf * ops.cast(self.momentum, variable.dtype) + ops.cast(gradient, variable.dtype))
        self.assign_sub(variable, buf * ops.cast(learning_rate, variable.dtype))


class _Adam(_CoupledWeightDecay, keras.optimizers.Adam):
    # Keras adds epsilon to sqrt(v) before bias correction, torch after: equal but for epsilon's scale.
    pass


def make_optimizer(model: keras.Model, train: TrainSpec, lr: float | None = None,
                   total_steps: int = 1) -> keras.optimizers.Optimizer:
    """SGD with momentum or Adam; weight decay on kernels (rank > 1) only, not on BatchNorm or biases.

    The learning rate follows ``make_schedule`` (Keras takes the schedule as the rate itself).
    """
    lr = make_schedule(train.lr if lr is None else lr, train, total_steps)
    if train.optimizer == "sgd":
        return _SGD(learning_rate=lr, momentum=train.momentum, l2=train.weight_decay, name="sgd")
    return _Adam(learning_rate=lr, epsilon=1e-8, l2=train.weight_decay, name="adam")


class _SharedSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """``shared.specs.base.lr_factor`` as a Keras schedule (it is called with the 0-based step)."""

    def __init__(self, lr: float, schedule: str, total_steps: int):
        self.lr, self.schedule, self.total_steps = lr, schedule, total_steps

    def __call__(self, step):
        if self.schedule == "constant":
            return ops.convert_to_tensor(self.lr, "float32")
        t = ops.minimum(ops.cast(step, "float32"), float(self.total_steps)) / float(max(self.total_steps, 1))
        return self.lr * 0.5 * (1.0 + ops.cos(math.pi * t))

    def get_config(self):
        return {"lr": self.lr, "schedule": self.schedule, "total_steps": self.total_steps}


def make_schedule(lr: float, train: TrainSpec, total_steps: int) -> _SharedSchedule:
    """Per-step schedule with the shared formula (``shared.specs.base.lr_factor``)."""
    return _SharedSchedule(lr, train.schedule, total_steps)


class _FitAdapter(keras.Model):
    """Lets Keras ``fit`` train a twin model with the task's free loss function.

    Keras 3's documented hook for a custom loss is ``compute_loss``; the model
    itself stays the plain twin, so its weights keep their canonical names.
    """

    def __init__(self, model: keras.Model, spec, loss_fn: Callable, **kwargs):
        super().__init__(**kwargs)
        self.model, self.spec, self.loss_fn = model, spec, loss_fn

    def call(self, x, training=False):
        return self.model(x, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return self.loss_fn(y_pred, y, self.spec)["loss"]


class _PlanBatches(keras.utils.PyDataset):
    """Serves the batches of a shared batch plan, epoch by epoch, in order."""

    def __init__(self, images: np.ndarray, targets: np.ndarray, plan: list[list[np.ndarray]], augment=None):
        super().__init__()
        self.images, self.targets, self.plan, self.epoch = images, targets, plan, 0
        self.augment = augment

    def __len__(self) -> int:
        return len(self.plan[min(self.epoch, len(self.plan) - 1)])

    def __getitem__(self, i):
        idx = self.plan[min(self.epoch, len(self.plan) - 1)][i]
        images = self.images[idx]
        return (images if self.augment is None else self.augment(images)), self.targets[idx]

    def on_epoch_end(self) -> None:
        self.epoch += 1


class _History(keras.callbacks.Callback):
    def __init__(self, evaluate, evaluate_on: str, progress):
        super().__init__()
        self.evaluate, self.evaluate_on, self.progress = evaluate, evaluate_on, progress
        self.rows, self.elapsed, self.start = [], 0.0, 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.elapsed += time.perf_counter() - self.start
        row = {"epoch": epoch + 1, "loss": float(logs["loss"]), "seconds": self.elapsed}
        if self.evaluate is not None:
            row.update({f"{self.evaluate_on}_{k}": v for k, v in self.evaluate().items() if not isinstance(v, list)})
        self.rows.append(row)
        if self.progress:
            print("  ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                  flush=True)


class Trainer:
    """Trains ``model`` with ``loss_fn(outputs, targets, spec) -> {"loss": ..., ...}``.

    ``step`` runs one batch; ``fit`` runs a whole batch plan with Keras ``fit``,
    evaluating after each epoch. ``total_steps`` sets the length of the
    learning-rate schedule.
    """

    def __init__(self, model: keras.Model, spec, loss_fn: Callable, train: TrainSpec | None = None,
                 lr: float | None = None, total_steps: int = 1, device: str = "cpu"):
        self.model, self.spec, self.loss_fn, self.device = model, spec, loss_fn, resolve_device(device)
        self.adapter = _FitAdapter(model, spec, loss_fn, name="fit_adapter")
        self.adapter.compile(optimizer=make_optimizer(model, train or spec.train, lr, total_steps))

    def step(self, images, targets) -> float:
        """One optimisation step on a batch; returns the batch's total loss."""
        with tf.device(self.device):
            return float(self.adapter.train_on_batch(images, targets))

    def gradients(self, images, targets) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        """Loss terms and every parameter's gradient (canonical keys) on one batch in training mode; no update."""
        variables = self.model.trainable_variables
        with tf.device(self.device), tf.GradientTape() as tape:
            losses = self.loss_fn(self.model(images, training=True), targets, self.spec)
        grads = tape.gradient(losses["loss"], variables)
        return {k: float(v) for k, v in losses.items()}, bridge.gradients(self.model, variables, grads)

    def fit(self, images: np.ndarray, targets: np.ndarray, plan: list[list[np.ndarray]],
            evaluate: Callable[[], dict] | None = None, progress: bool = True,
            augment: Callable | None = None,
            evaluate_on: str = "test") -> list[dict]:
        """Train over ``plan`` (per epoch, batch index arrays); returns one history row per epoch.

        evaluate: the metrics to record after each epoch, as ``{evaluate_on}_{metric}`` (the split it scores).
        augment: applied to each batch of images before its step (targets unchanged).
        """
        history = _History(evaluate, evaluate_on, progress)
        with tf.device(self.device):
            self.adapter.fit(_PlanBatches(images, targets, plan, augment), epochs=len(plan), shuffle=False,
                             verbose=1 if progress else 0, callbacks=[history])
        return history.rows
