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
"""

from __future__ import annotations

import argparse
import datetime
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn

from shared.data import batch_plan, load, training_targets
from shared.specs import get_spec

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
    """Join the process group of this torchrun job; (rank, world size). gloo on the CPU, nccl on a GPU."""
    backend = "nccl" if device.startswith("cuda") else "gloo"
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return dist.get_rank(), dist.get_world_size()


def shard(batch: np.ndarray, rank: int, world: int) -> np.ndarray:
    """This worker's part of one global batch (index array): contiguous slices of equal size."""
    if len(batch) % world:
        raise ValueError(f"a global batch of {len(batch)} images does not split over {world} workers; expected a "
                         f"multiple of {world}")
    size = len(batch) // world
    return batch[rank * size:(rank + 1) * size]


def train(task, spec, init: dict[str, np.ndarray], steps: int, global_batch: int, rank: int, world: int,
          device: str = "cpu") -> tuple[torch.nn.Module, list[float], float]:
    """``steps`` optimiser steps of the global batch plan on this worker's slices; returns the model (unwrapped),
    the global batch's losses and the wall time of the steps."""
    data = load(spec)
    model = sync_batchnorm(bridge.import_weights(task.build_model(spec), init)).to(device)
    wrapped = torch.nn.parallel.DistributedDataParallel(model, broadcast_buffers=False) if world > 1 else model
    batches = [b for epoch in batch_plan(len(data.train), global_batch, spec.train.epochs, spec.train.seed)
               for b in epoch if len(b) == global_batch][:steps]
    if len(batches) < steps:
        raise ValueError(f"{steps} steps of {global_batch} images: the training split has only {len(batches)}")
    x = to_native(data.train.images, channels=spec.model.in_channels, device=device)
    y = targets_to_native(training_targets(data.train, spec), device)
    trainer = Trainer(wrapped, spec, task.compute_loss, total_steps=len(batches), device=device)
    losses, started = [], time.perf_counter()
    for batch in batches:
        idx = torch.as_tensor(shard(batch, rank, world), device=x.device)
        loss = torch.tensor(trainer.step(x[idx], y[idx]))
        if world > 1:  # the global batch's loss: the mean of the workers' (equal-sized) means
            dist.all_reduce(loss)
            loss /= world
        losses.append(float(loss))
    return model.cpu(), losses, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    """One worker of ``compare.data_parallel``'s torch job (under torchrun)."""
    import importlib

    parser = argparse.ArgumentParser(prog="pytorch_impl.data_parallel")
    parser.add_argument("--task", required=True)
    parser.add_argument("--preset", required=True)
    parser.add_argument("--init", required=True, help="canonical initial weights (.safetensors)")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--global-batch", type=int, required=True)
    parser.add_argument("--out", required=True, help="rank 0 writes the trained weights here")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    rank, world = join(args.device)
    try:
        spec = get_spec(args.task, args.preset)
        task = importlib.import_module(f"pytorch_impl.{args.task}")
        from shared.weights import load_file

        model, losses, seconds = train(task, spec, load_file(args.init), args.steps, args.global_batch, rank, world,
                                       args.device)
        if rank == 0:
            bridge.save_weights(model, args.out, {"workers": str(world), "steps": str(args.steps),
                                                  "seconds": f"{seconds:.6f}", "losses": ",".join(map(str, losses))})
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
