"""The training machinery every PyTorch twin uses: optimizer and loop.

Twin of ``tensorflow_impl/training.py``. Both consume the same batch plan
(``shared.data.batch_plan``) and compute the same update: coupled weight decay
on conv / dense kernels only, momentum SGD or Adam.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from shared.data import batch_plan
from shared.specs.base import TrainSpec, lr_factor

from . import bridge
from .tensors import targets_to_native, to_native


def make_optimizer(model: nn.Module, train: TrainSpec, lr: float | None = None) -> torch.optim.Optimizer:
    """SGD with momentum or Adam; weight decay on kernels (ndim > 1) only, not on BatchNorm or biases.

    The learning-rate schedule is applied by ``make_schedule`` around it.
    """
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": train.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    lr = train.lr if lr is None else lr
    if train.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=train.momentum)
    return torch.optim.Adam(groups, lr=lr, eps=1e-8)


def make_schedule(optimizer: torch.optim.Optimizer, train: TrainSpec, total_steps: int):
    """Per-step schedule with the shared formula (``shared.specs.base.lr_factor``)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(train.schedule, step, total_steps))


class Trainer:
    """Trains ``model`` with ``loss_fn(outputs, targets, spec) -> {"loss": ..., ...}``.

    ``step`` runs one batch; ``fit`` runs a whole batch plan, evaluating after
    each epoch. ``total_steps`` sets the length of the learning-rate schedule.
    """

    def __init__(self, model: nn.Module, spec, loss_fn: Callable, train: TrainSpec | None = None,
                 lr: float | None = None, total_steps: int = 1, device: str | torch.device = "cpu"):
        self.model, self.spec, self.loss_fn = model, spec, loss_fn
        self.device = torch.device(device)
        train = train or spec.train
        self.optimizer = make_optimizer(model, train, lr)
        self.schedule = make_schedule(self.optimizer, train, total_steps)

    def step(self, images: torch.Tensor, targets: torch.Tensor) -> float:
        """One optimisation step on a native batch; returns the batch's total loss."""
        self.model.train()
        losses = self.loss_fn(self.model(images), targets, self.spec)
        self.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        self.optimizer.step()
        self.schedule.step()
        return float(losses["loss"].detach())

    def gradients(self, images: torch.Tensor, targets) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        """Loss terms and every parameter's gradient (canonical keys) on one batch in training mode; no update."""
        self.model.train()
        losses = self.loss_fn(self.model(images), targets, self.spec)
        self.model.zero_grad(set_to_none=True)
        losses["loss"].backward()
        return {k: float(v.detach()) for k, v in losses.items()}, bridge.gradients(self.model)

    def fit(self, images: torch.Tensor, targets: torch.Tensor, plan: list[list[np.ndarray]],
            evaluate: Callable[[], dict] | None = None, progress: bool = True,
            augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
            evaluate_on: str = "test") -> list[dict]:
        """Train over ``plan`` (per epoch, batch index arrays); returns one history row per epoch.

        evaluate: the metrics to record after each epoch, as ``{evaluate_on}_{metric}`` (the split it scores).
        augment: applied to each batch of images before its step (targets unchanged).
        """
        history, elapsed = [], 0.0
        for epoch, batches in enumerate(plan):
            start, total, count = time.perf_counter(), 0.0, 0
            bar = tqdm(batches, desc=f"torch epoch {epoch + 1}/{len(plan)}", disable=not progress, leave=False)
            for idx in bar:
                idx_t = torch.as_tensor(idx, device=images.device)
                x = images[idx_t] if augment is None else augment(images[idx_t])
                loss = self.step(x, targets[idx_t])
                total, count = total + loss * len(idx), count + len(idx)
                bar.set_postfix(loss=f"{total / count:.4f}")
            elapsed += time.perf_counter() - start
            row = {"epoch": epoch + 1, "loss": total / count, "seconds": elapsed}
            if evaluate is not None:
                row.update({f"{evaluate_on}_{k}": v for k, v in evaluate().items() if not isinstance(v, list)})
            history.append(row)
            if progress:
                print(_describe(row), flush=True)
        return history


def fit_spec(model: nn.Module, spec, loss_fn: Callable, images: torch.Tensor, targets: torch.Tensor, *,
             evaluate: Callable[[], dict] | None = None, evaluate_on: str = "test", progress: bool = True,
             augment: Callable | None = None, device: str | torch.device = "cpu") -> list[dict]:
    """Train ``model`` for ``spec.train``'s epochs on the shared batch plan (``shared.data.batch_plan``, the same
    batches in both twins) with ``loss_fn``; the per-epoch history of ``Trainer.fit``. The ``train`` of every task."""
    plan = batch_plan(len(images), spec.train.batch_size, spec.train.epochs, spec.train.seed)
    trainer = Trainer(model, spec, loss_fn, total_steps=sum(map(len, plan)), device=device)
    return trainer.fit(images, targets, plan, evaluate=evaluate, evaluate_on=evaluate_on, progress=progress,
                       augment=augment)


def _describe(row: dict) -> str:
    return "  ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())


def reference_loop(model: nn.Module, spec, loss_fn: Callable, images: np.ndarray, targets: np.ndarray,
                   lr: float = 0.01, momentum: float = 0.9) -> Callable[[list[np.ndarray]], float]:
    """PyTorch's plain training loop, none of the twin's machinery: ``torch.optim.SGD`` and the textbook
    step. Returns ``run(batches) -> seconds``, the wall time of one step per batch (index arrays) of
    ``images`` (NHWC) and ``targets``. The yardstick the twin's own loop is measured against."""
    x, y = to_native(images), targets_to_native(targets)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    model.train()

    def run(batches: list[np.ndarray]) -> float:
        start = time.perf_counter()
        for idx in batches:
            idx = torch.as_tensor(idx)
            loss = loss_fn(model(x[idx]), y[idx], spec)["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        float(loss.detach())  # the last step has finished
        return time.perf_counter() - start

    return run


def twin_loop(model: nn.Module, spec, loss_fn: Callable, images: np.ndarray, targets: np.ndarray,
              total_steps: int) -> Callable[[list[np.ndarray]], float]:
    """The twin's own loop (``Trainer.fit``, spec's optimiser and schedule) as ``run(batches) -> seconds`` of
    one epoch over ``batches``, timed as ``fit`` times its epochs (the same protocol as ``reference_loop``)."""
    trainer = Trainer(model, spec, loss_fn, total_steps=total_steps)
    x, y = to_native(images), targets_to_native(targets)
    return lambda batches: trainer.fit(x, y, [batches], progress=False)[0]["seconds"]
