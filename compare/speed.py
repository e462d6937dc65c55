"""Timing that is fair to every backend, and honest about its own noise.

One protocol for all:

* **warm-up**: calls until two consecutive windows agree within 5% on their median
  (compilers, caches and allocators settle) or a time cap, whatever the backend;
* **grouped samples**: a sample times ``number`` back-to-back calls, with
  ``number`` chosen so that a sample lasts at least ``sample_s`` (10 ms, as
  timeit's autorange does): a 0.1 ms call timed alone measures the timer and
  the scheduler, not the model;
* **until stable**: samples are taken until the last ``window`` of them has a
  coefficient of variation (std / mean of per-call times) of at most
  ``target_cv`` (0.05), or a sample or time limit is reached. The figures are
  p50, p90 and CV of that window; a figure whose CV stayed above the target
  is returned with ``stable: False`` and the report flags it with its CV.

Thread counts are set once for every framework (``backends.set_threads``) and
recorded with the results. The garbage collector is off while a sample runs.
"""

from __future__ import annotations

import gc
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
    sample_s: float = 0.01
    target_cv: float = 0.05
    window: int = 6
    max_samples: int = 48
    max_time_s: float = 12.0


QUICK = TimingBudget(warmup_max_s=5.0, window=5, max_samples=15, max_time_s=2.0)
STANDARD = TimingBudget()


def _clock(run: Callable[[Any], Any], arg: Any, number: int) -> float:
    """Seconds per call of ``number`` back-to-back calls, the garbage collector off."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(number):
            run(arg)
        return (time.perf_counter() - start) / number
    finally:
        if enabled:
            gc.enable()


Clock = Callable[[Callable[[Any], Any], Any, int], float]


def warm_up(run: Callable[[Any], Any], arg: Any, budget: TimingBudget = STANDARD,
            clock: Clock = _clock) -> tuple[float, int]:
    """Call ``run(arg)`` until the median of consecutive windows settles; (last median seconds, calls made)."""
    started, previous, calls = time.perf_counter(), None, 0
    while True:
        median = statistics.median(clock(run, arg, 1) for _ in range(budget.warmup_window))
        calls += budget.warmup_window
        if previous is not None and abs(median - previous) <= budget.stable_within * previous:
            return median, calls
        if time.perf_counter() - started > budget.warmup_max_s:
            return median, calls
        previous = median


def autorange(run: Callable[[Any], Any], arg: Any, budget: TimingBudget = STANDARD, clock: Clock = _clock) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, ... back-to-back calls that last at least ``sample_s`` (timeit's rule)."""
    number = 1
    while True:
        for factor in (1, 2, 5):
            if clock(run, arg, number * factor) * number * factor >= budget.sample_s:
                return number * factor
        number *= 10


def cv(values: list[float]) -> float:
    mean = statistics.fmean(values)
    return statistics.pstdev(values) / mean if mean else 0.0


def time_call(run: Callable[[Any], Any], arg: Any, budget: TimingBudget = STANDARD, clock: Clock = _clock) -> dict:
    """Warm ``run(arg)`` up, then time grouped samples until stable; per-call milliseconds.

    Returns p50_ms, p90_ms and cv of the reported window, runs (samples in it), number (calls per
    sample), samples (all timed), warmup_runs, stable (CV within the target) and target_cv.
    clock(run, arg, number) -> seconds per call is the measurement (replaceable in tests).
    """
    _, warmup_runs = warm_up(run, arg, budget, clock)
    number = autorange(run, arg, budget, clock)
    samples: list[float] = []
    started = time.perf_counter()
    while True:
        samples.append(clock(run, arg, number))
        window = samples[-budget.window:]
        stable = len(window) == budget.window and cv(window) <= budget.target_cv
        if stable or len(samples) >= budget.max_samples or (
                time.perf_counter() - started >= budget.max_time_s and len(samples) >= min(3, budget.window)):
            break
    # A stable window is reported as it is; otherwise every sample, so the CV shows the whole spread.
    reported = sorted(ms * 1e3 for ms in (window if stable else samples))
    return {"p50_ms": statistics.median(reported), "p90_ms": _quantile(reported, 0.9), "cv": cv(reported),
            "runs": len(reported), "number": number, "samples": len(samples), "warmup_runs": warmup_runs,
            "stable": stable, "target_cv": budget.target_cv}


def _quantile(sorted_values: list[float], q: float) -> float:
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def matmul_peak_gflops(threads: int, sizes: tuple[int, ...] = (256, 512, 1024)) -> dict:
    """The machine's fp32 matrix-multiply rate (torch.mm, the BLAS both frameworks' convs end up near), timed
    the way the report times a model (``time_call``: the same warm-up, grouped samples, p50), so that a
    model's GFLOP/s (its FLOPs over its p50) and this rate are read on one scale; the best size counts."""
    import torch

    torch.set_num_threads(threads)
    rates = {}
    with torch.inference_mode():
        for n in sizes:
            a, b = torch.randn(n, n), torch.randn(n, n)
            timing = time_call(lambda pair: torch.mm(*pair), (a, b), QUICK)
            rates[n] = 2 * n**3 / (timing["p50_ms"] / 1e3) / 1e9
    n = max(rates, key=rates.get)
    return {"gflops": rates[n], "n": n, "by_size": {str(k): v for k, v in rates.items()},
            "library": f"torch.mm {torch.__version__}", "threads": threads, "statistic": "p50"}


def model_flops(model, spec) -> int:
    """FLOPs of one forward pass of one image (multiply and add counted apart), by torch's FLOP counter."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    h, w, c = spec.input_shape
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model.eval()(torch.zeros(1, c, h, w))
    return int(counter.get_total_flops())
