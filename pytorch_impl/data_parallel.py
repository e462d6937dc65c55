"""Data-parallel training of a twin model with DistributedDataParallel, one process per worker.

Twin of ``tensorflow_impl/data_parallel.py``. Launched by torchrun (``compare.data_parallel`` builds the
command): each process reads RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT from its environment, joins the
process group (gloo on the CPU, nccl on a GPU) and trains on its slice of every global batch of the project's
batch plan, so that N workers with B images each see exactly the batches one process with N x B images sees.

BatchNorm across workers: synchronized. Each BatchNorm2d in training computes its batch mean and variance
over the images of every worker (two all-reduces, autograd-aware), so N workers compute what one process does
on the whole batch, running statistics included: the equivalence the tests check is exact up to float
summation order. torch's own SyncBatchNorm runs on GPUs only, hence this layer; TensorFlow's twin makes the
same choice with the replica context's all-reduce.

Fault tolerance: with ``--checkpoint DIR``, rank 0 saves weights and optimiser state every ``--every`` steps
(shared.checkpoint: canonical safetensors, atomic, no pickle), and a job that torchrun restarts after a
worker died resumes from there, on the same batches, to the same weights as an uninterrupted run.
"""

from __future__ import annotations

import datetime
import os
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn

from shared import checkpoint as CK
from shared import weights as W
from shared import worker
from shared.data import full_batches, load, shard, training_targets

from . import bridge
from .layers import BatchNorm2d
from .tensors import targets_to_native, to_native
from .training import Trainer


class SyncBatchNorm2d(BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch (every worker's images).

    Outside training, or in a single process, it is the plain layer (F.batch_norm)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims = (0, 2, 3)
        count = torch.tensor(float(x.numel() // x.shape[1]), dtype=x.dtype, device=x.device)
        count = dist_nn.all_reduce(count)
        mean = dist_nn.all_reduce(x.sum(dims)) / count
        centred = x - mean[None, :, None, None]
        var = dist_nn.all_reduce((centred * centred).sum(dims)) / count  # biased, as F.batch_norm normalises
        with torch.no_grad():  # torch's update: unbiased variance, momentum as the new statistic's weight
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(mean.detach() * m)
            self.running_var.mul_(1 - m).add_(var.detach() * (count / (count - 1)) * m)
            self.num_batches_tracked.add_(1)
        scale = self.weight * torch.rsqrt(var + self.eps)
        return centred * scale[None, :, None, None] + self.bias[None, :, None, None]


def sync_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Every BatchNorm2d of ``model`` made synchronized in place (parameters and buffers kept)."""
    for module in model.modules():
        if type(module) is BatchNorm2d:
            module.__class__ = SyncBatchNorm2d
    return model


def join(device: str = "cpu", timeout_s: float = 60.0) -> tuple[int, int]:
    """Join the process group of this torchrun job; (rank, world size). gloo on the CPU, nccl on a GPU.

    The group's keys live under this attempt's prefix in torchrun's store: after a restart, the workers of the
    new attempt must not read the addresses the dead attempt published (seen here: gloo then dials them and
    fails with "connection refused")."""
    backend = "nccl" if device.startswith("cuda") else "gloo"
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    timeout = datetime.timedelta(seconds=timeout_s)
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world, is_master=False,
                          timeout=timeout)
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    dist.init_process_group(backend, store=dist.PrefixStore(f"twinvision/attempt-{attempt}", store), rank=rank,
                            world_size=world, timeout=timeout)
    return rank, world


def _state(optimizer: torch.optim.Optimizer) -> tuple[str, dict[str, str]]:
    """The optimiser's name and, by checkpoint prefix, the key under which torch keeps that state of a
    parameter (``optimizer.state[p]``)."""
    if isinstance(optimizer, torch.optim.Adam):
        return "adam", {CK.ADAM_M: "exp_avg", CK.ADAM_V: "exp_avg_sq"}
    if isinstance(optimizer, torch.optim.SGD):
        return "sgd", {CK.MOMENTUM: "momentum_buffer"}
    raise ValueError(f"checkpoints hold SGD or Adam state; this job's optimizer is {type(optimizer).__name__}")


def save_checkpoint(path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, losses: list[float]) -> None:
    """Weights, the optimiser's state (SGD momentum, or Adam's moments) and the steps done (their losses),
    canonical and atomic (shared.checkpoint)."""
    name, state = _state(optimizer)
    tensors = bridge.export_weights(model)
    for key, p in model.named_parameters():
        for prefix, slot in state.items():
            if slot in optimizer.state.get(p, {}):
                tensors[f"{prefix}{key}"] = optimizer.state[p][slot].detach().cpu().numpy()
    W.save_file(tensors, path, {"optimizer": name, "steps": str(len(losses)), "losses": ",".join(map(str, losses))})


def load_checkpoint(path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[float]:
    """The state ``save_checkpoint`` wrote, into ``model`` and ``optimizer``; the losses of the steps done."""
    name, state = _state(optimizer)
    tensors, meta = W.load_file(path), W.read_metadata(path)
    CK.check_optimizer(meta.get("optimizer", "sgd"), name, path)
    bridge.import_weights(model, {k: v for k, v in tensors.items() if not k.startswith(CK.OPTIMIZER_PREFIX)},
                          source=f"checkpoint {str(path)!r}")
    losses = [float(v) for v in meta["losses"].split(",") if v]
    for key, p in model.named_parameters():
        for prefix, slot in state.items():
            if f"{prefix}{key}" in tensors:
                optimizer.state[p][slot] = torch.as_tensor(tensors[f"{prefix}{key}"]).clone().to(p.device)
                if name == "adam":  # Adam's bias correction counts the steps taken
                    optimizer.state[p]["step"] = torch.tensor(float(len(losses)))
    return losses


def train(task, spec, init: dict[str, np.ndarray], steps: int, global_batch: int, rank: int, world: int,
          device: str = "cpu", checkpoint: str | None = None, every: int = 0
          ) -> tuple[torch.nn.Module, list[float], tuple[float, float]]:
    """``steps`` optimiser steps of the global batch plan on this worker's slices; returns the model (unwrapped),
    the global batch's losses and the wall times (seconds of the steps after the first, of the first).

    With ``checkpoint`` (a folder), rank 0 saves the state every ``every`` steps and a restarted job resumes
    from the last one; every rank records its steps there (shared.checkpoint)."""
    data = load(spec)
    model = sync_batchnorm(bridge.import_weights(task.build_model(spec), init)).to(device)
    wrapped = torch.nn.parallel.DistributedDataParallel(model, broadcast_buffers=False) if world > 1 else model
    batches = full_batches(len(data.train), global_batch, spec.train.epochs, spec.train.seed)[:steps]
    if len(batches) < steps:
        raise ValueError(f"{steps} steps of {global_batch} images: the training split has only {len(batches)}")
    x = to_native(data.train.images, channels=spec.input_shape[-1], device=device)
    y = targets_to_native(training_targets(data.train, spec), device)
    trainer = Trainer(wrapped, spec, task.compute_loss, total_steps=len(batches), device=device)
    losses: list[float] = []
    if checkpoint and CK.latest(checkpoint).exists():
        losses = load_checkpoint(CK.latest(checkpoint), model, trainer.optimizer)
        for _ in losses:  # the schedule at the step the checkpoint was taken
            trainer.schedule.step()
        if rank == 0:
            CK.note_resume(checkpoint, len(losses))
    started = first = time.perf_counter()
    for done, batch in enumerate(batches[len(losses):], start=len(losses) + 1):
        idx = torch.as_tensor(shard(batch, rank, world), device=x.device)
        loss = torch.tensor(trainer.step(x[idx], y[idx]))
        if world > 1:  # the global batch's loss: the mean of the workers' (equal-sized) means
            dist.all_reduce(loss)
            loss /= world
        losses.append(float(loss))
        if first == started:
            first = time.perf_counter()
        if checkpoint:
            if rank == 0 and every and done % every == 0 and done < steps:
                save_checkpoint(CK.latest(checkpoint), model, trainer.optimizer, losses)
            CK.record_step(checkpoint, rank, done)
    return model.cpu(), losses, (time.perf_counter() - first, first - started)


def main(argv: list[str] | None = None) -> int:
    """One worker of ``compare.data_parallel``'s torch job (under torchrun)."""
    import importlib

    args = worker.parser("pytorch_impl.data_parallel").parse_args(argv)
    torch.manual_seed(0)
    rank, world = join(args.device)
    try:
        spec = worker.job_spec(args)
        task = importlib.import_module(f"pytorch_impl.{args.task}")
        model, losses, seconds = train(task, spec, W.load_file(args.init), args.steps, args.global_batch, rank, world,
                                       args.device, args.checkpoint, args.every)
        if rank == 0:
            bridge.save_weights(model, args.out, worker.metadata(world, args.steps, losses, *seconds))
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
