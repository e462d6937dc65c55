"""Stage ``parity levels``: L1-L4 between the twins on the tiny preset of the run's model
(compare.parity), one level at a time, so a level that breaks does not take the others with it."""

from __future__ import annotations

from ..parity import LEVELS, run_parity
from . import RunContext

PARITY_STEP = "parity levels L1-L4 (tiny preset)"


def parity_levels(ctx: RunContext) -> None:
    """Appends every level's entries to ``parity``."""
    ctx.step("parity", PARITY_STEP)
    for level in LEVELS:
        try:
            ctx.result["parity"].extend(run_parity(ctx.task, "tiny", (level,), variant=ctx.variant))
        except Exception as err:  # noqa: BLE001
            ctx.fail(f"parity level {level}", err)


__all__ = ["PARITY_STEP", "parity_levels"]
