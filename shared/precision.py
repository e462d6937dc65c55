"""Mixed precision, framework-free: the formats both twins run in and how far their results may move from
float32's (the twins: ``pytorch_impl/precision.py`` with torch.autocast, ``tensorflow_impl/precision.py``
with a Keras mixed dtype policy).

In both, the weights stay float32 and convolutions and matrix products run in the low format; the twins
differ in which other ops follow (torch's autocast lists against Keras' per-layer compute dtype), which is
why a mixed-precision result is held to a tolerance of its own, a multiple of the format's unit roundoff,
not to float32's.
"""

from __future__ import annotations

PRECISIONS = ("float32", "bfloat16", "float16")
# Unit roundoff, 2^-(significand bits): the largest relative error of one rounding to the format.
UNIT_ROUNDOFF = {"float32": 2.0 ** -24, "bfloat16": 2.0 ** -8, "float16": 2.0 ** -11}
# float16 gradients underflow below 6e-8: the loss is multiplied by this before the backward pass and the
# gradients divided by it after (the static form of torch's GradScaler and Keras' LossScaleOptimizer).
LOSS_SCALE = {"float32": 1.0, "bfloat16": 1.0, "float16": 2.0 ** 12}


def tolerance(tolerances, precision: str, what: str) -> float:
    """The relative tolerance of a ``precision`` result against float32 (or between the twins at one
    precision), from a spec's ParityTolerances: ``what`` is "outputs" (outputs and loss) or "gradients"."""
    if check_precision(precision) == "float32":
        return tolerances.forward if what == "outputs" else tolerances.gradients
    if what == "outputs":
        return tolerances.mixed_roundoffs * UNIT_ROUNDOFF[precision]
    if what == "gradients":
        return getattr(tolerances, f"{precision}_gradients")
    raise ValueError(f"unknown comparison {what!r}; expected 'outputs' or 'gradients'")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {list(PRECISIONS)}")
    return precision


__all__ = ["LOSS_SCALE", "PRECISIONS", "UNIT_ROUNDOFF", "check_precision", "tolerance"]
