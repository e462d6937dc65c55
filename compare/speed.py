"""Timing that is fair to every backend.

The same protocol for all: warm up until the median of consecutive windows
stops moving (compilers, caches and allocators settle), then time enough runs
for a spread, and report p50, p90 and the coefficient of variation. Thread
counts are set once for every framework (``backends.set_threads``) and
recorded with the results.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class TimingBudget:
    """How long to warm up and to time one (backend, batch) pair."""

    warmup_window: int = 3
    warmup_max_s: float = 20.0
    stable_within: float = 0.05
    min_runs: int = 10
    max_runs: int = 200
    min_time_s: float = 1.0


QUICK = TimingBudget(warmup_max_s=10.0, min_runs=5, max_runs=50, min_time_s=0.3)
STANDARD = TimingBudget()


def time_call(run: Callable[[Any], Any], arg: Any, budget: TimingBudget = STANDARD) -> dict:
    """Warm ``run(arg)`` up until stable, then time it; milliseconds."""
    def once() -> float:
        start = time.perf_counter()
        run(arg)
        return time.perf_counter() - start

    warm_start, previous, warmup_runs = time.perf_counter(), None, 0
    while True:
        window = [once() for _ in range(budget.warmup_window)]
        warmup_runs += len(window)
        median = statistics.median(window)
        if previous is not None and abs(median - previous) <= budget.stable_within * previous:
            break
        if time.perf_counter() - warm_start > budget.warmup_max_s:
            break
        previous = median
    samples: list[float] = []
    timed_start = time.perf_counter()
    while len(samples) < budget.max_runs and (len(samples) < budget.min_runs
                                              or time.perf_counter() - timed_start < budget.min_time_s):
        samples.append(once())
    samples_ms = sorted(s * 1e3 for s in samples)
    mean = statistics.fmean(samples_ms)
    return {"p50_ms": statistics.median(samples_ms), "p90_ms": _quantile(samples_ms, 0.9),
            "cv": statistics.pstdev(samples_ms) / mean if mean else 0.0, "runs": len(samples_ms),
            "warmup_runs": warmup_runs}


def _quantile(sorted_values: list[float], q: float) -> float:
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def matmul_peak_gflops(threads: int, n: int = 1024, seconds: float = 1.0) -> dict:
    """The machine's fp32 matrix-multiply rate (torch.mm, the BLAS both frameworks' convs end up near)."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        torch.mm(a, b)
    best, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return {"gflops": 2 * n**3 / best / 1e9, "n": n, "library": f"torch.mm {torch.__version__}", "threads": threads}


def model_flops(model, spec) -> int:
    """FLOPs of one forward pass of one image (multiply and add counted apart), by torch's FLOP counter."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    h, w, c = spec.input_shape
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model.eval()(torch.zeros(1, c, h, w))
    return int(counter.get_total_flops())
