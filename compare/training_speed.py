"""Is each twin's training loop as fast as its framework allows? Measured against a bare reference.

For each framework, the same model (the shared initial weights), the same
batches and the same timing: the framework's textbook training step
(``reference_loop``: torch.optim.SGD; a tf.function step with
keras.optimizers.SGD) against the twin's own loop (``twin_loop``: its Trainer,
optimiser and schedule, ``fit`` on the TensorFlow side). Rounds alternate the
two, so a noisy neighbour or a frequency change hits both, and the ratio is
the median of the per-round ratios. A twin below ``TARGET_RATIO`` of its
reference is flagged: the gap is then the twin's fault, not the framework's.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Callable

from shared.data import batch_plan, training_targets

TARGET_RATIO = 0.9
# What each framework's bare reference step is, in words (the report's table says it).
REFERENCE_STEPS = {"torch": "torch.optim.SGD step", "tensorflow": "tf.function step with keras.optimizers.SGD"}


def framework_step(framework: str) -> str:
    return REFERENCE_STEPS[framework]


@dataclass(frozen=True)
class ProbeBudget:
    """steps: batches per timed chunk; rounds: timed (reference, twin) pairs after one untimed warm-up pair."""

    steps: int
    rounds: int


PROBES = {"quick": ProbeBudget(steps=8, rounds=3), "standard": ProbeBudget(steps=16, rounds=6)}


def measure(twin, spec, split, initial_model: Callable[[str], object], budget: ProbeBudget) -> dict:
    """Images per second of ``twin``'s framework reference step and of its own loop, on ``split``.

    initial_model(framework) returns a fresh model holding the shared initial weights (one per loop).
    """
    images, targets = split.images, training_targets(split, spec)
    batch = spec.train.batch_size
    needed = budget.steps * (budget.rounds + 1)
    epochs = -(-needed // max(len(images) // batch, 1)) + 1
    full = [idx for epoch in batch_plan(len(images), batch, epochs, spec.train.seed) for idx in epoch
            if len(idx) == batch][:needed]
    if len(full) < needed:
        raise ValueError(f"training-speed probe: needs {needed} full batches of {batch}; the split of "
                         f"{len(images)} images gives {len(full)}")
    chunks = [full[i:i + budget.steps] for i in range(0, needed, budget.steps)]
    loss_fn = twin.task.compute_loss
    reference = twin.training.reference_loop(initial_model(twin.framework), spec, loss_fn, images, targets)
    own = twin.training.twin_loop(initial_model(twin.framework), spec, loss_fn, images, targets,
                                  total_steps=spec.train.epochs * -(-len(images) // batch))
    warm_reference, warm_twin = reference(chunks[0]), own(chunks[0])  # tracing, allocation, caches
    ratios, ref_rates, twin_rates = [], [], []
    for i, chunk in enumerate(chunks[1:]):
        # Alternate who goes first, so a slow spell does not always land on the same side.
        if i % 2:
            t_twin, t_ref = own(chunk), reference(chunk)
        else:
            t_ref, t_twin = reference(chunk), own(chunk)
        images_done = len(chunk) * batch
        ref_rates.append(images_done / t_ref)
        twin_rates.append(images_done / t_twin)
        ratios.append(t_ref / t_twin)
    ratio = statistics.median(ratios)
    return {"reference_images_per_s": statistics.median(ref_rates),
            "twin_images_per_s": statistics.median(twin_rates),
            "ratio": ratio, "ratios": ratios, "ok": ratio >= TARGET_RATIO, "target": TARGET_RATIO,
            "steps": budget.steps, "rounds": budget.rounds, "batch": batch,
            "warmup_s": {"reference": warm_reference, "twin": warm_twin}}
