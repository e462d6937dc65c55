"""Data-parallel training of a twin model with tf.distribute, one process per worker.

Twin of ``pytorch_impl/data_parallel.py``. ``compare.data_parallel`` starts one process per worker with its
TF_CONFIG (the cluster's addresses and this worker's index); each joins a MultiWorkerMirroredStrategy and
trains on its slice of every global batch of the project's batch plan, so that N workers with B images each see
exactly the batches one process with N x B images sees.

The loop is a custom one (``strategy.run`` and ``strategy.reduce``): Keras 3's ``fit()`` under
MultiWorkerMirroredStrategy fails (a PerReplica value reaches a Tensor conversion; measured with Keras 3.15),
while the custom loop ends with the same weights on every worker.

BatchNorm across workers: synchronized, as in the PyTorch twin. Each BatchNorm2d in training computes its batch
mean and variance over the images of every replica (two all-reduces in the replica context, whose gradient is
the all-reduce of the gradient), so N workers compute what one process does on the whole batch.

Fault tolerance: with ``--checkpoint DIR``, rank 0 saves weights and optimiser state every ``--every`` steps
(shared.checkpoint: canonical safetensors, atomic, no pickle; the same file the PyTorch twin writes), and a job
that ``compare.data_parallel`` restarts after a worker died resumes from there, on the same batches, to the
same weights as an uninterrupted run. (Keras' BackupAndRestore serves ``fit()``, which this loop replaces.)
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

from shared import checkpoint as CK
from shared import weights as W
from shared import worker
from shared.data import full_batches, load, shard, training_targets

from . import bridge
from .layers import BatchNorm2d
from .tensors import targets_to_native, to_native
from .training import make_optimizer


class SyncBatchNorm2d(BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch (every replica's images).

    Outside training, or with one replica, it is the plain layer."""

    def call(self, x, training=False):
        replica = tf.distribute.get_replica_context()
        if not training or replica is None or replica.num_replicas_in_sync == 1:
            return super().call(x, training=training)
        total = tf.distribute.ReduceOp.SUM
        count = replica.all_reduce(total, tf.cast(tf.size(x) // tf.shape(x)[-1], x.dtype))
        mean = replica.all_reduce(total, tf.reduce_sum(x, axis=[0, 1, 2])) / count
        centred = x - mean
        var = replica.all_reduce(total, tf.reduce_sum(centred * centred, axis=[0, 1, 2])) / count  # biased
        m = self.momentum  # Keras' momentum is the old statistic's weight; torch's update of the variance
        self.moving_mean.assign(self.moving_mean * m + tf.stop_gradient(mean) * (1.0 - m))
        self.moving_variance.assign(self.moving_variance * m
                                    + tf.stop_gradient(var) * count / (count - 1.0) * (1.0 - m))
        return centred * (self.gamma * tf.math.rsqrt(var + self.epsilon)) + self.beta


def sync_batchnorm(model):
    """Every BatchNorm2d of ``model`` made synchronized in place (variables kept)."""
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if type(layer) is BatchNorm2d:
            layer.__class__ = SyncBatchNorm2d
    return model


def join(device: str = "cpu") -> tuple[tf.distribute.Strategy, int, int]:
    """The strategy of this worker from its TF_CONFIG (none or one worker: TensorFlow's default strategy);
    (strategy, rank, world size)."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    world = len(config.get("cluster", {}).get("worker", [])) or 1
    if world == 1:
        return tf.distribute.get_strategy(), 0, 1
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.NCCL if device.startswith("cuda")
        else tf.distribute.experimental.CommunicationImplementation.RING)
    strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    return strategy, int(config["task"]["index"]), world


def _state(optimizer) -> tuple[str, dict[str, list]]:
    """The optimiser's name and its per-variable state lists by checkpoint prefix. Keras 3 keeps SGD's momentum
    public (``momentums``) and Adam's moments private (``_momentums``, ``_velocities``)."""
    if isinstance(optimizer, keras.optimizers.Adam):
        return "adam", {CK.ADAM_M: optimizer._momentums, CK.ADAM_V: optimizer._velocities}
    if isinstance(optimizer, keras.optimizers.SGD) and hasattr(optimizer, "momentums"):
        return "sgd", {CK.MOMENTUM: optimizer.momentums}
    raise ValueError(f"checkpoints hold SGD or Adam state; this job's optimizer is {type(optimizer).__name__}")


def save_checkpoint(path, model, optimizer, losses: list[float]) -> None:
    """Weights, the optimiser's state (SGD momentum, or Adam's moments) and the steps done (their losses),
    canonical and atomic (shared.checkpoint)."""
    name, state = _state(optimizer)
    tensors = bridge.export_weights(model)
    for key, var, kind in bridge.variable_map(model):
        if var.trainable:
            for prefix, values in state.items():
                tensors[f"{prefix}{key}"] = W.from_keras(kind, np.asarray(values[optimizer._get_variable_index(var)]))
    W.save_file(tensors, path, {"optimizer": name, "steps": str(len(losses)), "losses": ",".join(map(str, losses))})


def load_checkpoint(path, model, optimizer) -> list[float]:
    """The state ``save_checkpoint`` wrote, into ``model`` and ``optimizer``; the losses of the steps done."""
    name, state = _state(optimizer)
    tensors, meta = W.load_file(path), W.read_metadata(path)
    CK.check_optimizer(meta.get("optimizer", "sgd"), name, path)
    bridge.import_weights(model, {k: v for k, v in tensors.items() if not k.startswith(CK.OPTIMIZER_PREFIX)},
                          source=f"checkpoint {str(path)!r}")
    for key, var, kind in bridge.variable_map(model):
        for prefix, values in state.items():
            if f"{prefix}{key}" in tensors:
                values[optimizer._get_variable_index(var)].assign(W.to_keras(kind, tensors[f"{prefix}{key}"]))
    losses = [float(v) for v in meta["losses"].split(",") if v]
    optimizer.iterations.assign(len(losses))  # the schedule (and Adam's bias correction) at the checkpoint's step
    return losses


def train(task, spec, init: dict[str, np.ndarray], steps: int, global_batch: int, rank: int, world: int,
          strategy: tf.distribute.Strategy, device: str = "cpu", checkpoint: str | None = None, every: int = 0
          ) -> tuple[object, list[float], tuple[float, float]]:
    """``steps`` optimiser steps of the global batch plan on this worker's slices; returns the model, the global
    batch's losses and the wall times (seconds of the steps after the first, of the first).

    With ``checkpoint`` (a folder), rank 0 saves the state every ``every`` steps and a restarted job resumes
    from the last one; every rank records its steps there (shared.checkpoint)."""
    data = load(spec)
    batches = full_batches(len(data.train), global_batch, spec.train.epochs, spec.train.seed)[:steps]
    if len(batches) < steps:
        raise ValueError(f"{steps} steps of {global_batch} images: the training split has only {len(batches)}")
    # Keras sums the replicas' gradients, and the coupled weight decay is added to each replica's gradient
    # before that sum: each replica adds 1/world of it, so the decay is applied once, as in one process.
    train_spec = dataclasses.replace(spec.train, weight_decay=spec.train.weight_decay / world)
    losses: list[float] = []
    with strategy.scope():
        model = sync_batchnorm(bridge.import_weights(task.build_model(spec), init))
        optimizer = make_optimizer(model, train_spec, total_steps=len(batches))
        optimizer.build(model.trainable_variables)
        if checkpoint and CK.latest(checkpoint).exists():
            losses = load_checkpoint(CK.latest(checkpoint), model, optimizer)
            if rank == 0:
                CK.note_resume(checkpoint, len(losses))

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            loss = task.compute_loss(model(x, training=True), y, spec)["loss"]
            share = loss / world  # this replica's mean over its images, a world-th of the global mean
        grads = tape.gradient(share, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    @tf.function
    def step(x, y):
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, strategy.run(replica_step, args=(x, y)), axis=None)

    x = to_native(data.train.images, channels=spec.input_shape[-1], device=device)
    y = targets_to_native(training_targets(data.train, spec), device)
    started = first = time.perf_counter()
    for done, batch in enumerate(batches[len(losses):], start=len(losses) + 1):
        idx = shard(batch, rank, world)
        losses.append(float(step(tf.gather(x, idx), tf.gather(y, idx))))
        if first == started:
            first = time.perf_counter()
        if checkpoint:
            if rank == 0 and every and done % every == 0 and done < steps:
                save_checkpoint(CK.latest(checkpoint), model, optimizer, losses)
            CK.record_step(checkpoint, rank, done)
    return model, losses, (time.perf_counter() - first, first - started)


def main(argv: list[str] | None = None) -> int:
    """One worker of ``compare.data_parallel``'s TensorFlow job (TF_CONFIG in its environment)."""
    import importlib

    args = worker.parser("tensorflow_impl.data_parallel").parse_args(argv)
    strategy, rank, world = join(args.device)  # first: the strategy must exist before other TensorFlow work
    spec = worker.job_spec(args)
    task = importlib.import_module(f"tensorflow_impl.{args.task}")
    model, losses, seconds = train(task, spec, W.load_file(args.init), args.steps, args.global_batch, rank, world,
                                   strategy, args.device, args.checkpoint, args.every)
    if rank == 0:
        bridge.save_weights(model, args.out, worker.metadata(world, args.steps, losses, *seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
