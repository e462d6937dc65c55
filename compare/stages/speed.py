"""Stage ``speed``: every backend (fp32 and quantized) timed at the profile's batch sizes under the timing
rule of compare.speed (warm-up, pinned threads, median and spread), with achieved GFLOP/s."""

from __future__ import annotations

import numpy as np

from .. import backends as B
from .. import speed as S
from . import RunContext


def step_name(backend: str, batches: tuple[int, ...]) -> str:
    """The progress step of timing ``backend``."""
    return f"{backend}: speed at batch {', '.join(map(str, batches))}"


def speed(ctx: RunContext, runners: dict[str, B.Runner], data, reference: dict) -> None:
    """``speed`` rows (backend, batch, p50 / p90 / CV, GFLOP/s) and ``flops_per_image``."""
    flops = None
    try:
        flops = S.model_flops(reference["torch"], ctx.spec)
    except Exception as err:  # noqa: BLE001
        ctx.fail("FLOP count", err)
    ctx.result["flops_per_image"] = flops
    for name, runner in list(runners.items()):
        ctx.step("speed", step_name(name, ctx.batches))
        for batch in ctx.batches:
            try:
                images = np.ascontiguousarray(data.test.images[:batch])
                if len(images) < batch:
                    images = np.resize(images, (batch, *images.shape[1:]))
                timing = S.time_call(runner.run, runner.to_input(images), ctx.budget)
                row = {"backend": name, "batch": batch, **timing}
                if flops:
                    row["gflops"] = flops * batch / (timing["p50_ms"] / 1e3) / 1e9
                ctx.result["speed"].append(row)
            except Exception as err:  # noqa: BLE001
                ctx.fail(f"speed {name} batch {batch}", err)
                ctx.mark_failed(name, err)


__all__ = ["speed", "step_name"]
