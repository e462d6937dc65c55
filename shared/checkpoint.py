"""Checkpoints and progress of a data-parallel job, framework-free (both twins' ``data_parallel.py`` use it).

A checkpoint is one safetensors file, written atomically by rank 0 (all ranks hold the same state): the
canonical weights, the optimiser's state per parameter (SGD: ``optimizer.momentum.<key>``; Adam:
``optimizer.adam_m.<key>`` and ``optimizer.adam_v.<key>``, the first and second moments; canonical layout, so
either framework can read it), and in its metadata the optimiser, the number of steps done and their losses.
No pickle.

Each rank appends ``<pid> <step> <unix time>`` to ``rank<r>.steps`` after every step: a test (or a user) can
see how far a job got and which process to stop, and a resumed job measures the work it lost: the steps done
after the last checkpoint, and how long they had taken.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

LATEST = "latest.safetensors"
MOMENTUM = "optimizer.momentum."
ADAM_M, ADAM_V = "optimizer.adam_m.", "optimizer.adam_v."
OPTIMIZER_PREFIX = "optimizer."  # every optimiser tensor's; the rest of a checkpoint is the model's weights


def check_optimizer(found: str, expected: str, path) -> None:
    """A checkpoint written by one optimiser cannot resume another: a clear error naming both."""
    if found != expected:
        raise ValueError(f"checkpoint {str(path)!r} holds {found} state; this job's optimizer is {expected}")


def latest(folder: str | os.PathLike) -> Path:
    return Path(folder) / LATEST


def record_step(folder: str | os.PathLike, rank: int, step: int) -> None:
    with open(Path(folder) / f"rank{rank}.steps", "a") as log:
        log.write(f"{os.getpid()} {step} {time.time():.6f}\n")


def steps_log(folder: str | os.PathLike, rank: int) -> list[tuple[int, int, float]]:
    """(pid, step, time) of every step a rank recorded, oldest first (a line cut by a kill is skipped)."""
    path = Path(folder) / f"rank{rank}.steps"
    rows = []
    for line in path.read_text().splitlines() if path.exists() else []:
        parts = line.split()
        if len(parts) == 3:
            rows.append((int(parts[0]), int(parts[1]), float(parts[2])))
    return rows


def note_resume(folder: str | os.PathLike, from_step: int) -> dict:
    """Called by rank 0 when a job restarts from the checkpoint at ``from_step``: the work lost since then
    (steps done after it, and their seconds, from rank 0's log) appended to ``resumes.json``."""
    log = steps_log(folder, 0)
    reached = max((s for _, s, _ in log), default=from_step)
    done_at = {s: t for _, s, t in log}
    record = {"from_step": from_step, "reached": reached, "lost_steps": reached - from_step,
              "lost_seconds": (done_at[reached] - done_at[from_step]) if from_step in done_at and reached in done_at
              else None, "resumed_at": time.time()}
    path = Path(folder) / "resumes.json"
    history = json.loads(path.read_text()) if path.exists() else []
    path.write_text(json.dumps([*history, record], indent=1))
    return record


def resumes(folder: str | os.PathLike) -> list[dict]:
    path = Path(folder) / "resumes.json"
    return json.loads(path.read_text()) if path.exists() else []
