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

from shared.data import batch_plan
from shared.specs.base import TrainSpec

from . import bridge
from .tensors import resolve_device

# Training steps per call of Keras' compiled train function (``compile(steps_per_execution=...)``).
STEPS_PER_EXECUTION = 8


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
    ``augment`` (a batch -> batch function or None) runs inside the compiled
    training step, before the forward pass.
    """

    def __init__(self, model: keras.Model, spec, loss_fn: Callable, **kwargs):
        super().__init__(**kwargs)
        self.model, self.spec, self.loss_fn, self.augment = model, spec, loss_fn, None

    def call(self, x, training=False):
        return self.model(x, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return self.loss_fn(y_pred, y, self.spec)["loss"]

    def train_step(self, data):
        if self.augment is not None:
            x, y = data
            data = (self.augment(x), y)
        return super().train_step(data)

    def use_augment(self, augment: Callable | None) -> None:
        if augment is not self.augment:
            self.augment = augment
            self.train_function = None  # traced with the previous augment: trace again


def _epoch_dataset(images: np.ndarray, targets: np.ndarray, batches: list[np.ndarray]) -> tf.data.Dataset:
    """One epoch of a batch plan as a tf.data pipeline: the epoch's rows gathered once, batched in C++.

    batch_plan's epochs are full batches and at most one smaller last batch, which is exactly what
    ``Dataset.batch`` makes of the epoch's rows in order.
    """
    size = len(batches[0])
    if any(len(b) != size for b in batches[:-1]) or len(batches[-1]) > size:
        raise ValueError(f"batch plan: expected equal batches and a last one no larger; received sizes "
                         f"{[len(b) for b in batches]}")
    order = np.concatenate(batches)
    return tf.data.Dataset.from_tensor_slices((images[order], targets[order])).batch(size)


class _History(keras.callbacks.Callback):
    def __init__(self, evaluate, evaluate_on: str, progress):
        super().__init__()
        self.evaluate, self.evaluate_on, self.progress = evaluate, evaluate_on, progress
        self.rows, self.elapsed, self.start = [], 0.0, 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        loss = float(logs["loss"])  # first: TensorFlow runs asynchronously, this waits for the epoch's last step
        self.elapsed += time.perf_counter() - self.start
        row = {"epoch": epoch + 1, "loss": loss, "seconds": self.elapsed}
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
        # Several steps per call of the compiled function: Keras' per-step Python (iterator, callbacks,
        # logs) is paid once per STEPS_PER_EXECUTION steps. The same updates, in the same order.
        self.adapter.compile(optimizer=make_optimizer(model, train or spec.train, lr, total_steps),
                             steps_per_execution=STEPS_PER_EXECUTION)

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
        self.adapter.use_augment(augment)
        with tf.device(self.device):
            # One fit call per epoch: each epoch of the plan has its own order (a tf.data pipeline each);
            # the optimiser, its schedule step and the callbacks carry over from epoch to epoch.
            for epoch, batches in enumerate(plan):
                self.adapter.fit(_epoch_dataset(images, targets, batches), initial_epoch=epoch, epochs=epoch + 1,
                                 shuffle=False, verbose=1 if progress else 0, callbacks=[history])
        return history.rows


def fit_spec(model: keras.Model, spec, loss_fn: Callable, images: np.ndarray, targets: np.ndarray, *,
             evaluate: Callable[[], dict] | None = None, evaluate_on: str = "test", progress: bool = True,
             augment: Callable | None = None, device: str = "cpu") -> list[dict]:
    """Train ``model`` for ``spec.train``'s epochs on the shared batch plan (``shared.data.batch_plan``, the same
    batches in both twins) with ``loss_fn``; the per-epoch history of ``Trainer.fit``. The ``train`` of every task."""
    plan = batch_plan(len(images), spec.train.batch_size, spec.train.epochs, spec.train.seed)
    trainer = Trainer(model, spec, loss_fn, total_steps=sum(map(len, plan)), device=device)
    return trainer.fit(images, targets, plan, evaluate=evaluate, evaluate_on=evaluate_on, progress=progress,
                       augment=augment)


def reference_loop(model: keras.Model, spec, loss_fn: Callable, images: np.ndarray, targets: np.ndarray,
                   lr: float = 0.01, momentum: float = 0.9) -> Callable[[list[np.ndarray]], float]:
    """Keras' plain training step, none of the twin's machinery: ``keras.optimizers.SGD`` and a
    ``tf.function`` step with a GradientTape. Returns ``run(batches) -> seconds``, the wall time of one
    step per batch (index arrays) of ``images`` (NHWC) and ``targets``. The yardstick the twin's own loop
    is measured against."""
    optimizer = keras.optimizers.SGD(learning_rate=lr, momentum=momentum)

    @tf.function(reduce_retracing=True)
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(model(x, training=True), y, spec)["loss"]
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        return loss

    def run(batches: list[np.ndarray]) -> float:
        start = time.perf_counter()
        for idx in batches:
            loss = step(images[idx], targets[idx])
        float(loss)  # the last step has finished (TensorFlow dispatches asynchronously)
        return time.perf_counter() - start

    return run


def twin_loop(model: keras.Model, spec, loss_fn: Callable, images: np.ndarray, targets: np.ndarray,
              total_steps: int) -> Callable[[list[np.ndarray]], float]:
    """The twin's own loop (``Trainer.fit``, spec's optimiser and schedule) as ``run(batches) -> seconds`` of
    one epoch over ``batches``, timed as ``fit`` times its epochs (the same protocol as ``reference_loop``)."""
    trainer = Trainer(model, spec, loss_fn, total_steps=total_steps)
    return lambda batches: trainer.fit(images, targets, [batches], progress=False)[0]["seconds"]
