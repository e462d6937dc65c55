"""The command line of one data-parallel worker, the same for both twins (``pytorch_impl.data_parallel`` and
``tensorflow_impl.data_parallel``): what ``compare.data_parallel`` passes and how it becomes the job's spec.

``--seed`` and ``--lr`` replace the preset's batch-plan seed and learning rate (the convergence study trains
one job per seed, with the rate scaled to the global batch or not); the initial weights come from ``--init``.
"""

from __future__ import annotations

import argparse
import dataclasses

from shared.specs import get_spec


def parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog)
    p.add_argument("--task", required=True)
    p.add_argument("--preset", required=True)
    p.add_argument("--init", required=True, help="canonical initial weights (.safetensors)")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--global-batch", type=int, required=True)
    p.add_argument("--out", required=True, help="rank 0 writes the trained weights here")
    p.add_argument("--device", default="cpu")
    p.add_argument("--checkpoint", help="a folder: resume from its checkpoint, save one every --every steps")
    p.add_argument("--every", type=int, default=0)
    p.add_argument("--seed", type=int, help="the batch plan's seed (default: the preset's)")
    p.add_argument("--lr", type=float, help="the learning rate (default: the preset's)")
    return p


def job_spec(args: argparse.Namespace):
    """The preset's spec with this job's seed and learning rate."""
    spec = get_spec(args.task, args.preset)
    changes = {k: v for k, v in (("seed", args.seed), ("lr", args.lr)) if v is not None}
    return dataclasses.replace(spec, train=dataclasses.replace(spec.train, **changes)) if changes else spec


def metadata(world: int, steps: int, losses: list[float], seconds: float, first_step_seconds: float) -> dict:
    """What rank 0 writes beside the trained weights. ``seconds``: the steps after the first of this attempt
    (warm: the first traces TensorFlow's step function and warms torch's allocator)."""
    return {"workers": str(world), "steps": str(steps), "seconds": f"{seconds:.6f}",
            "first_step_seconds": f"{first_step_seconds:.6f}", "losses": ",".join(map(str, losses))}


__all__ = ["job_spec", "metadata", "parser"]
